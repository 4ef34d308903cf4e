"""bench_dvc: what DVC itself costs on this project, and how well artifacts travel.

Figures (each the median of ``--repeats`` runs, every command a fresh ``python -m dvc``):

* anchor: ``dvc --version`` (interpreter + DVC import; the floor of any dvc command);
* demo project (the real pipeline on the shortened clips with small params, one target
  and three dances, reproduced once): no-op ``dvc repro`` and ``dvc status`` — goal < 3 s;
* synthetic matrix project: the pipeline's foreach/matrix shape with trivial commands
  for ``--targets`` (4) × ``--sources`` (8) subjects (185 stages): the same two figures,
  and their cost per stage beside the demo's (the 3 s goal is the demo's);
* synthetic project whose ``frames`` and ``labels`` stages each output ``--files``
  (20,000) small JPEG/PNG files: the first ``dvc repro`` (writes, hashes and caches
  them), then no-op ``dvc repro`` and ``dvc status`` — goal < 10 s, plus the same after
  changing cache settings (link type, checksum jobs);
* ``dvc push`` / ``dvc pull`` throughput (MB/s, files/s) to a local SeaweedFS S3 server
  and, as the anchor, to a local-directory remote, for the demo project and a synthetic
  project of ``--transfer-files`` (2,000) files per stage.

Run: ``python -m benchmarks.bench_dvc`` (add ``--full-demo`` to use the full demo
clips instead of the shortened ones, ``--files N`` for another synthetic size).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from tests.dvc_helpers import (
    TEST_CATALOG,
    clone_tree,
    commit_all,
    dvc,
    git,
    make_project,
    repro,
    short_clips,
    stage_outputs,
    tracked_outputs,
)
from tests.s3server import S3Server, seaweedfs

GEN_SCRIPT = '''"""Write N small, distinct images: JPEG frames or PNG labels (like the real stages)."""
import sys
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

kind, out, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
base = rng.integers(0, 255, (96, 64, 3), dtype=np.uint8)
base = cv2.GaussianBlur(base, (9, 9), 0)
for i in range(n):
    img = base.copy()
    cv2.putText(img, str(i), (2, 50), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    if kind == "frames":
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        (out / f"{i:06d}.jpg").write_bytes(buf.tobytes())
    else:
        ok, buf = cv2.imencode(".png", img)
        (out / f"{i:06d}.png").write_bytes(buf.tobytes())
'''

SYNTH_DVC_YAML = """stages:
  frames:
    cmd: python gen.py frames data/frames ${files}
    deps: [gen.py]
    params: [files]
    outs: [data/frames]
  labels:
    cmd: python gen.py labels data/labels ${files}
    deps: [gen.py, data/frames]
    params: [files]
    outs: [data/labels]
"""

# The real pipeline's matrix shape with trivial commands: per video (ingest, poses), per
# subject, per target (frames, labels_train, train, train_face, evaluate), per pair
# (normfit, labels_transfer, render, evaluate_transfer) and one report.
MATRIX_SCRIPT = '''"""Write one small file per output path named on the command line."""
import sys
from pathlib import Path

for out in sys.argv[1:]:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(out + "\\n")
'''


def _matrix_stage(cmd_out: str, deps: list[str], kind: str = "outs", params: list[str] | None = None) -> dict:
    stage = {"cmd": f"python w.py {cmd_out}", "deps": ["w.py", *deps],
             kind: [cmd_out] if kind == "outs" else [{cmd_out: {"cache": False}}]}
    if params:
        stage["params"] = params
    return stage


PAIR = "${item.target}/${item.source}"
MATRIX = {"target": "${targets}", "source": "${sources}"}
MATRIX_STAGES = {
    "ingest": {"foreach": "${videos}", "do": _matrix_stage("v/${key}", ["${item}"], params=["videos.${key}"])},
    "poses": {"foreach": "${videos}", "do": _matrix_stage("p/${key}", ["v/${key}"])},
    "subject": {"foreach": "${subjects}",
                "do": _matrix_stage("s/${key}", ["p/${item.video}"], params=["subjects.${key}"])},
    "frames": {"foreach": "${targets}", "do": _matrix_stage("f/${item}", ["s/${item}"])},
    "labels_train": {"foreach": "${targets}", "do": _matrix_stage("l/${item}", ["f/${item}"])},
    "train": {"foreach": "${targets}", "do": _matrix_stage("m/${item}", ["l/${item}"])},
    "train_face": {"foreach": "${targets}", "do": _matrix_stage("mf/${item}", ["m/${item}"])},
    "evaluate": {"foreach": "${targets}",
                 "do": _matrix_stage("e/${item}/eval.json", ["m/${item}", "mf/${item}"], "metrics")},
    "normfit": {"matrix": MATRIX, **_matrix_stage(f"n/{PAIR}", ["s/${item.target}", "s/${item.source}"])},
    "labels_transfer": {"matrix": MATRIX, **_matrix_stage(f"lt/{PAIR}", [f"n/{PAIR}", "f/${item.target}"])},
    "render": {"matrix": MATRIX,
               **_matrix_stage(f"o/{PAIR}", [f"lt/{PAIR}", "m/${item.target}", "mf/${item.target}"])},
    "evaluate_transfer": {"matrix": MATRIX, **_matrix_stage(f"e/{PAIR}/transfer.json", [f"o/{PAIR}"], "metrics")},
    "report": _matrix_stage("r/index.html", ["e"], params=["targets", "sources"]),
}


class Timing(NamedTuple):
    """Median wall-clock seconds, and median CPU seconds (user + system) of the child processes.

    The CPU figure is what the command costs on an idle machine; on a machine shared
    with other work the wall-clock figure also contains waiting for a core.
    """

    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:.2f} s (cpu {self.cpu:.2f} s)"


def median_time(fn: Callable[[], object], repeats: int) -> Timing:
    walls, cpus = [], []
    for _ in range(repeats):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return Timing(statistics.median(walls), statistics.median(cpus))


def noop_figures(project: Path, repeats: int) -> tuple[Timing, Timing]:
    """Timings of a no-op ``dvc repro`` and of ``dvc status`` (asserting they are no-ops)."""

    def noop_repro() -> None:
        r = repro(project)
        assert not r.ran and not r.restored, f"not a no-op: ran {r.ran}"

    def status() -> None:
        out = dvc(project, "status").stdout
        assert "up to date" in out, out

    return median_time(noop_repro, repeats), median_time(status, repeats)


def verdict(a: Timing, b: Timing, goal: float) -> str:
    worst = max(a.wall, b.wall)
    worst_cpu = max(a.cpu, b.cpu)
    return (f"goal < {goal:g} s: wall {'met' if worst < goal else 'MISSED'}, "
            f"cpu {'met' if worst_cpu < goal else 'MISSED'}")


def make_matrix(dest: Path, targets: int, sources: int) -> Path:
    """A project of :data:`MATRIX_DVC_YAML` over ``targets`` × ``sources`` subjects, each in its own video."""
    import yaml

    dest.mkdir(parents=True)
    (dest / "w.py").write_text(MATRIX_SCRIPT, encoding="utf-8")
    (dest / "dvc.yaml").write_text(yaml.safe_dump({"stages": MATRIX_STAGES}, sort_keys=False), encoding="utf-8")
    names = [f"t{i}" for i in range(targets)] + [f"s{i}" for i in range(sources)]
    (dest / "inputs").mkdir()
    for n in names:
        (dest / "inputs" / f"{n}.txt").write_text(n + "\n", encoding="utf-8")
    params = {"videos": {n: f"inputs/{n}.txt" for n in names},
              "subjects": {n: {"video": n, "person": "auto"} for n in names},
              "targets": names[:targets], "sources": names[targets:]}
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    (dest / ".gitignore").write_text("/v/\n/p/\n/s/\n/f/\n/l/\n/m/\n/mf/\n/n/\n/lt/\n/o/\n/r/\n", encoding="utf-8")
    git(dest, "init", "-q", "-b", "main")
    dvc(dest, "init", "-q")
    dvc(dest, "config", "core.analytics", "false")
    commit_all(dest, "synthetic matrix project")
    return dest


def make_synthetic(dest: Path, files: int) -> Path:
    dest.mkdir(parents=True)
    (dest / "gen.py").write_text(GEN_SCRIPT, encoding="utf-8")
    (dest / "dvc.yaml").write_text(SYNTH_DVC_YAML, encoding="utf-8")
    (dest / "params.yaml").write_text(f"files: {files}\n", encoding="utf-8")
    (dest / ".gitignore").write_text("/data/\n", encoding="utf-8")
    git(dest, "init", "-q", "-b", "main")
    dvc(dest, "init", "-q")
    dvc(dest, "config", "core.analytics", "false")
    commit_all(dest, "synthetic project")
    return dest


def data_size(project: Path) -> tuple[int, int]:
    """(bytes, files) of everything DVC caches in ``project``."""
    size = count = 0
    for p, cached in tracked_outputs(project):
        if not cached:
            continue
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        count += len(files)
        size += sum(f.stat().st_size for f in files)
    return size, count


def transfer(project: Path, remote: str, setup: list[list[str]], work: Path) -> dict[str, float]:
    """Push ``project`` to a fresh remote, then pull it into a copy with no cache: throughput."""
    src = clone_tree(project, work / "push")
    for args in setup:
        dvc(src, *args)
    size, count = data_size(src)
    t = time.perf_counter()
    dvc(src, "push", "-r", remote)
    push_s = time.perf_counter() - t
    dst = clone_tree(src, work / "pull")
    shutil.rmtree(dst / ".dvc" / "cache")
    for p, cached in tracked_outputs(dst):
        if cached and p.exists():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    t = time.perf_counter()
    dvc(dst, "pull", "-r", remote)
    pull_s = time.perf_counter() - t
    assert "up to date" in dvc(dst, "status").stdout
    mb = size / 1e6
    return {"MB": mb, "files": count, "push_s": push_s, "pull_s": pull_s,
            "push_MBps": mb / push_s, "pull_MBps": mb / pull_s,
            "push_fps": count / push_s, "pull_fps": count / pull_s}


def s3_setup(server: S3Server, prefix: str) -> list[list[str]]:
    return [
        ["remote", "add", "s3", f"s3://{server.bucket}/{prefix}"],
        ["remote", "modify", "s3", "endpointurl", server.endpoint],
        ["remote", "modify", "--local", "s3", "access_key_id", server.access_key],
        ["remote", "modify", "--local", "s3", "secret_access_key", server.secret_key],
    ]


def show_transfer(name: str, s3: dict[str, float], local: dict[str, float]) -> None:
    print(f"  {name}: {s3['files']:.0f} files, {s3['MB']:.1f} MB")
    for kind, f in (("S3 (SeaweedFS)", s3), ("local directory", local)):
        print(f"    {kind:16s} push {f['push_s']:7.1f} s  {f['push_MBps']:7.2f} MB/s  {f['push_fps']:8.0f} files/s"
              f" | pull {f['pull_s']:7.1f} s  {f['pull_MBps']:7.2f} MB/s  {f['pull_fps']:8.0f} files/s")
    print(f"    S3 / local time ratio: push {s3['push_s'] / local['push_s']:.1f}x, "
          f"pull {s3['pull_s'] / local['pull_s']:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20_000, help="files per synthetic stage output")
    ap.add_argument("--transfer-files", type=int, default=2_000,
                    help="files per stage in the synthetic project used for push/pull throughput")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per figure (median reported)")
    ap.add_argument("--targets", type=int, default=4, help="targets of the synthetic matrix project")
    ap.add_argument("--sources", type=int, default=8, help="sources of the synthetic matrix project")
    ap.add_argument("--full-demo", action="store_true", help="use the full demo clips (slower repro)")
    ap.add_argument("--demo-project", type=Path, default=None,
                    help="an already reproduced project copy to reuse instead of building one")
    ap.add_argument("--workdir", type=Path, default=None, help="where to build (default: a temp dir)")
    args = ap.parse_args()

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_dvc-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"bench_dvc in {root} (python {sys.version.split()[0]})")

    anchor = median_time(lambda: dvc(root, "--version"), args.repeats)
    print(f"anchor: dvc --version {anchor}")

    if args.demo_project:
        demo = args.demo_project
    else:
        clips = None if args.full_demo else short_clips(root / "clips")
        # the shortened clips' catalog with a third dance (the target dancing its own moves)
        catalog = None if args.full_demo else {**TEST_CATALOG, "sources": [*TEST_CATALOG["sources"], "cam01"]}
        demo = make_project(root / "demo", clips=clips, catalog=catalog)
        t = time.perf_counter()
        repro(demo)
        print(f"demo: full dvc repro {time.perf_counter() - t:.1f} s")
    demo_bytes, demo_files = data_size(demo)
    d_repro, d_status = noop_figures(demo, args.repeats)
    stages = len(stage_outputs(demo))
    print(f"demo ({stages} stages, {demo_files} cached files, {demo_bytes / 1e6:.1f} MB): no-op repro {d_repro}, "
          f"status {d_status}; {verdict(d_repro, d_status, 3)}; "
          f"wall ratio to anchor {d_repro.wall / anchor.wall:.1f}x / {d_status.wall / anchor.wall:.1f}x")

    matrix = make_matrix(root / "matrix", args.targets, args.sources)
    t = time.perf_counter()
    r = repro(matrix)
    first = time.perf_counter() - t
    m_repro, m_status = noop_figures(matrix, args.repeats)
    # the 3 s goal is the demo's; at this size the figures show how DVC's cost grows per stage
    print(f"synthetic matrix ({args.targets} targets x {args.sources} sources, {len(r.ran)} stages): first repro "
          f"{first:.1f} s; no-op repro {m_repro}, status {m_status}; per stage "
          f"{1000 * m_repro.wall / len(r.ran):.0f} / {1000 * m_status.wall / len(r.ran):.0f} ms "
          f"(demo: {1000 * d_repro.wall / stages:.0f} / {1000 * d_status.wall / stages:.0f} ms)")

    synth = make_synthetic(root / "synthetic", args.files)
    t = time.perf_counter()
    r = repro(synth)
    assert r.ran == {"frames", "labels"}, r.output[-2000:]
    first = time.perf_counter() - t
    s_repro, s_status = noop_figures(synth, args.repeats)
    print(f"synthetic ({2 * args.files} files): first repro {first:.1f} s; no-op repro {s_repro}, "
          f"status {s_status}; {verdict(s_repro, s_status, 10)}; "
          f"cpu ratio to demo {s_repro.cpu / d_repro.cpu:.1f}x / {s_status.cpu / d_status.cpu:.1f}x")

    # Settings that could matter for many small files.
    for label, cfg in (
        ("cache.type hardlink", ["cache.type", "hardlink"]),
        ("core.checksum_jobs 1", ["core.checksum_jobs", "1"]),
    ):
        variant = clone_tree(synth, root / f"synthetic-{label.replace(' ', '_')}")
        dvc(variant, "config", *cfg)
        if cfg[0] == "cache.type":
            dvc(variant, "checkout", "--relink")
        dvc(variant, "status")  # first status after a copy re-stats everything: not timed
        v_repro, v_status = noop_figures(variant, args.repeats)
        print(f"  with {label}: no-op repro {v_repro}, status {v_status}")
        shutil.rmtree(variant)

    print("transfer throughput (first push to an empty remote, pull into an empty cache):")
    small = synth
    if args.transfer_files != args.files:
        small = make_synthetic(root / "synthetic-transfer", args.transfer_files)
        repro(small)
    with seaweedfs(root / "seaweedfs", bucket="bench") as server:
        for name, project in (("demo", demo), ("synthetic", small)):
            s3 = transfer(project, "s3", s3_setup(server, name), root / f"xfer-s3-{name}")
            local = transfer(project, "dir", [["remote", "add", "dir", str(root / f"remote-{name}")]],
                             root / f"xfer-dir-{name}")
            show_transfer(name, s3, local)
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
