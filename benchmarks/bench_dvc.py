"""bench_dvc: what DVC itself costs on this project, as the catalog grows, and how well artifacts travel.

Figures (each the median of ``--repeats`` runs, every command a fresh ``python -m dvc``, as wall
time and as the CPU time of the dvc process; the load average is printed, since on a shared
machine the wall time also holds waiting for a core):

* code: what an edit to one library module reruns directly, by module (what dvc.yaml's code manifests
  give) and by package (code deps listed as subpackage directories in every stage, as before the
  manifests); static, from the imports (tools/dvc_deps.py);
* anchor: ``dvc --version`` (interpreter + DVC import; the floor of any dvc command);
* demo: the real pipeline on the shortened demo clips (one target, three dances), reproduced
  once: no-op ``dvc repro`` and ``dvc status`` (goal < 3 s);
* catalog: the real dvc.yaml, params.yaml and code over synthetic catalogs of ``--sizes``
  targets x dances (default 1x3, 1x10, 3x10, 5x20; every subject its own video, added with
  ``dvc add``), every output a tiny stand-in recorded with ``dvc commit -f``: stages, dvc.lock
  size, no-op ``dvc repro`` and ``dvc status`` (goal < 10 s at 5x20), the growth per added dance,
  a least-squares cost per stage, one pair / one target's dances of the largest catalog, and
  the largest one-target catalog shrunk to the smallest (its removed dances' entries stay in
  dvc.lock) before and after ``make prune-lock``; then one catalog (``--real-dirs``, default
  1x10x2000) whose output directories hold as many files as a real target's frames and labels
  (DVC walks a directory for each stage that names it). ``--baseline-tree`` measures another
  checkout in the same run (``--baseline-pure-yaml``: without ruamel.yaml's C parser);
* files: two stages of ``--files`` (20,000) small JPEG/PNG files each: first and no-op
  ``dvc repro`` / ``dvc status`` (goal < 10 s), also with other cache settings;
* transfer: ``dvc push`` / ``dvc pull`` throughput to a local SeaweedFS S3 server and, as the
  anchor, to a local-directory remote, for a project of ``--transfer-files`` files per stage
  and the demo.

Run: ``python -m benchmarks.bench_dvc`` (``--only catalog`` for one section, repeatable).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import NamedTuple

from tests.dvc_helpers import (
    REPO,
    TEST_CATALOG,
    clone_tree,
    commit_all,
    dvc,
    env,
    git,
    make_project,
    repro,
    set_catalog,
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


# --- catalog scaling: the real dvc.yaml over synthetic catalogs, tiny outputs ---------------------------------


def catalog_names(targets: int, dances: int) -> tuple[list[str], list[str]]:
    """Subject names of a synthetic catalog: ``t0..`` the targets, ``d0..`` the dances (one video each)."""
    return [f"t{i}" for i in range(targets)], [f"d{j}" for j in range(dances)]


def set_synthetic_catalog(project: Path, targets: int, dances: int) -> None:
    """Point ``project``'s catalog at ``targets`` × ``dances`` subjects, each in its own ``inputs/<name>.mp4``."""
    ts, ds = catalog_names(targets, dances)
    set_catalog(project, videos={n: f"inputs/{n}.mp4" for n in ts + ds},
                subjects={n: {"video": n, "person": "auto"} for n in ts + ds}, targets=ts, sources=ds)


# Output directories that hold one file per video frame (the rest hold a few files each).
FRAME_DIRS = ("data/frames", "data/labels")


def fabricate_outputs(project: Path, files_per_dir: int, frame_files: int | None = None) -> int:
    """Write a tiny stand-in for every output the pipeline declares; how many files were written.

    A path with a suffix is a file (``{}`` for JSON, its own name otherwise); one without is a
    directory of ``files_per_dir`` small files (``frame_files`` for the frames and labels
    directories under :data:`FRAME_DIRS`, when given), plus the files in it that other stages
    list as deps (a directory's ``index.parquet``).
    """
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        dep_files = {Path(d.fs_path) for s in repo.index.stages for d in s.deps}
    written = 0
    for path, _cached in tracked_outputs(project):
        if path.exists():
            continue
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n" if path.suffix == ".json" else f"{path.name}\n", encoding="utf-8")
            written += 1
        else:
            path.mkdir(parents=True)
            per_frame = str(path.relative_to(project)).startswith(FRAME_DIRS)
            n = frame_files if frame_files is not None and per_frame else files_per_dir
            for i in range(n):
                (path / f"{i:06d}.txt").write_text(f"{path.name} {i}\n", encoding="utf-8")
            inside = [d for d in dep_files if path in d.parents]
            for d in inside:
                d.parent.mkdir(parents=True, exist_ok=True)
                d.write_text(f"{d.relative_to(path)}\n", encoding="utf-8")
            written += n + len(inside)
    return written


def add_inputs(project: Path, targets: int, dances: int) -> None:
    """A tiny distinct ``inputs/<name>.mp4`` per subject, tracked with ``dvc add`` as a user's videos are."""
    ts, ds = catalog_names(targets, dances)
    new = [n for n in ts + ds if not (project / "inputs" / f"{n}.mp4").exists()]
    for n in new:
        (project / "inputs" / f"{n}.mp4").write_bytes(f"stand-in video {n}\n".encode())
    if new:
        dvc(project, "add", "-q", *(f"inputs/{n}.mp4" for n in new))


def accept_outputs(project: Path, files_per_dir: int, frame_files: int | None = None) -> None:
    """Fabricate the missing outputs and record them in dvc.lock as a real run would (``dvc commit -f``)."""
    fabricate_outputs(project, files_per_dir, frame_files)
    dvc(project, "commit", "-f", "-q")
    commit_all(project, "outputs accepted")


def make_catalog_project(dest: Path, targets: int, dances: int, root: Path, files_per_dir: int,
                         frame_files: int | None = None) -> Path:
    """The real pipeline of ``root`` (dvc.yaml, params.yaml, code) over a synthetic catalog, every
    output a tiny stand-in committed to dvc.lock, so a ``dvc repro`` has nothing to do."""
    make_project(dest, params={}, root=root)
    add_inputs(dest, targets, dances)
    set_synthetic_catalog(dest, targets, dances)
    accept_outputs(dest, files_per_dir, frame_files)
    return dest


@contextmanager
def pure_python_yaml(root: Path) -> Iterator[None]:
    """DVC's child processes parse YAML without ruamel.yaml's C parser (``ruamel.yaml.clib``), as
    before the project required it: a stub ``_ruamel_yaml`` module first on ``PYTHONPATH`` fails to
    import, and ruamel.yaml falls back to its pure-Python parser."""
    stub = root / "pure-yaml"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "_ruamel_yaml.py").write_text('raise ImportError("pure-Python YAML for bench_dvc")\n', encoding="utf-8")
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(stub), before]))
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


class CatalogRow(NamedTuple):
    label: str
    targets: int
    dances: int
    stages: int
    lock_lines: int
    lock_kb: float
    repro: Timing
    status: Timing


def lock_size(project: Path) -> tuple[int, float]:
    text = (project / "dvc.lock").read_bytes()
    return text.count(b"\n"), len(text) / 1024


def measure_catalog(label: str, project: Path, targets: int, dances: int, repeats: int) -> CatalogRow:
    noop_r, noop_s = noop_figures(project, repeats)
    lines, kb = lock_size(project)
    row = CatalogRow(label, targets, dances, len(stage_outputs(project)), lines, kb, noop_r, noop_s)
    print(f"  {row.label:34s} {row.stages:4d} stages  dvc.lock {row.lock_lines:6d} lines {row.lock_kb:6.0f} KB  "
          f"no-op repro {row.repro}  status {row.status}", flush=True)
    return row


def interleaved(pairs: list[tuple[str, Path, Path]], repeats: int) -> None:
    """No-op ``dvc repro`` of a baseline project and this tree's, run alternately ``repeats`` times each.

    Measured one tree after the other, the two sides can land minutes apart on a shared
    machine whose speed drifts by 10-15 %; alternating puts the same drift on both.
    """
    def noop(project: Path) -> None:
        r = repro(project)
        assert not r.ran and not r.restored, f"not a no-op: ran {r.ran}"

    print("baseline against this tree, no-op dvc repro run alternately:", flush=True)
    for label, base, this in pairs:
        runs: dict[str, list[Timing]] = {"base": [], "this": []}
        for _ in range(repeats):
            runs["base"].append(median_time(lambda p=base: noop(p), 1))
            runs["this"].append(median_time(lambda p=this: noop(p), 1))
        b, t = (Timing(statistics.median(x.wall for x in v), statistics.median(x.cpu for x in v))
                for v in (runs["base"], runs["this"]))
        print(f"  {label}: baseline {b}, this tree {t}: {t.cpu / b.cpu:.2f}x the CPU ({100 * (t.cpu / b.cpu - 1):+.0f} %)",
              flush=True)


def per_stage_fit(rows: list[CatalogRow]) -> tuple[float, float]:
    """Least-squares fixed cost (s) and cost per stage (ms) of a no-op repro over ``rows`` (wall)."""
    xs = [r.stages for r in rows]
    ys = [r.repro.wall for r in rows]
    slope, intercept = statistics.linear_regression(xs, ys)
    return intercept, 1000 * slope


def catalog_section(root: Path, tree: Path, repeats: int, files_per_dir: int,
                    sizes: list[tuple[int, int]], tag: str = "", targeted: bool = True,
                    real_dirs: tuple[int, int, int] | None = None) -> list[CatalogRow]:
    """No-op ``dvc repro`` / ``dvc status`` and dvc.lock size over catalogs of ``sizes`` (targets, dances),
    the growth per added dance, what removing dances leaves behind, and (``real_dirs``: targets, dances,
    files) one catalog whose directories hold as many files as real frames and labels do."""
    rows = []
    projects = {}
    for targets, dances in sizes:
        work = root / f"catalog{tag}-{targets}x{dances}"
        t = time.perf_counter()
        projects[(targets, dances)] = make_catalog_project(work, targets, dances, tree, files_per_dir)
        build = time.perf_counter() - t
        print(f"  {targets} x {dances}: built in {build:.0f} s", flush=True)
        rows.append(measure_catalog(f"{targets} x {dances}", work, targets, dances, repeats))
    # What a big catalog's user runs for one pair or one target: DVC still reads every stage and the
    # whole dvc.lock, but checks only the targets and what they need.
    targets, dances = max(sizes)
    big = projects[(targets, dances)]
    for label, args in ((f"dvc repro render@t0-d0 (one pair, {targets} x {dances})", ["repro", "render@t0-d0"]),
                        ("dvc repro --glob 'render@t0-*' (one target's dances)", ["repro", "--glob", "render@t0-*"]),
                        ("dvc status render@t0-d0", ["status", "render@t0-d0"])) if targeted else ():
        timing = median_time(lambda a=args: dvc(big, *a), repeats)
        print(f"  {label}: {timing}")
    by_targets: dict[int, list[CatalogRow]] = {}
    for r in rows:
        by_targets.setdefault(r.targets, []).append(r)
    for targets, group in sorted(by_targets.items()):
        if len(group) < 2:
            continue
        a, b = group[0], group[-1]
        n = b.dances - a.dances
        print(f"  growth per added dance at {targets} target(s), {a.dances} -> {b.dances}: "
              f"{(b.stages - a.stages) / n:.0f} stages, {(b.lock_lines - a.lock_lines) / n:.0f} lock lines, "
              f"no-op repro +{1000 * (b.repro.wall - a.repro.wall) / n:.0f} ms (cpu "
              f"+{1000 * (b.repro.cpu - a.repro.cpu) / n:.0f} ms), status "
              f"+{1000 * (b.status.wall - a.status.wall) / n:.0f} ms")
    if len(rows) >= 2:
        fixed, per_stage = per_stage_fit(rows)
        print(f"  no-op repro ~ {fixed:.2f} s + {per_stage:.1f} ms per stage (least squares over the sizes above)")
    # Removing dances: shrink the largest one-target catalog back to the smallest one's dances.
    one = sorted((s for s in sizes if s[0] == 1), key=lambda s: s[1])
    if len(one) >= 2:
        (_, small), (_, big) = one[0], one[-1]
        work = clone_tree(projects[(1, big)], root / f"catalog{tag}-1x{big}-to-{small}")
        set_synthetic_catalog(work, 1, small)
        for name in catalog_names(1, big)[1][small:]:  # the removed dances' videos go too
            for path in (work / "inputs" / f"{name}.mp4", work / "inputs" / f"{name}.mp4.dvc"):
                path.unlink()
        accept_outputs(work, files_per_dir)  # the report's params changed: accept its (stand-in) output
        rows.append(measure_catalog(f"1 x {big} shrunk to 1 x {small}", work, 1, small, repeats))
        if (tree / "tools" / "prune_lock.py").exists():
            subprocess.run([sys.executable, "-m", "tools.prune_lock"], cwd=work, env=env(work), check=True,
                           capture_output=True)
            rows.append(measure_catalog(f"1 x {big} shrunk to 1 x {small}, then make prune-lock", work, 1, small,
                                        repeats))
    if real_dirs is not None:
        # Real frames and labels directories hold a file per video frame: DVC walks a directory
        # for every stage that names it as a dep or output, on every command.
        targets, dances, files = real_dirs
        work = root / f"catalog{tag}-{targets}x{dances}-frames{files}"
        t = time.perf_counter()
        make_catalog_project(work, targets, dances, tree, files_per_dir, frame_files=files)
        print(f"  {targets} x {dances} with {files} files per frames or labels directory: built in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        rows.append(measure_catalog(f"{targets} x {dances}, {files} files per frames/labels dir", work, targets,
                                    dances, repeats))
    return rows


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


def code_granularity_section(tree: Path = REPO) -> None:
    """What one edited library module reruns directly (before any output changes downstream) on
    the shipped catalog, by module (what the code manifests give: the stages whose command imports
    it) and by package (every stage listing the module's subpackage as a directory, as dvc.yaml did
    before the manifests). Static: from the imports. The code stage itself is not counted."""
    import yaml

    from tools.dvc_deps import CMD, code_deps

    dvc_yaml = yaml.safe_load((tree / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    params = yaml.safe_load((tree / "params.yaml").read_text(encoding="utf-8"))
    pairs = len(params["targets"]) * len(params["sources"])
    count = {"foreach:${videos}": len(params["videos"]), "foreach:${subjects}": len(params["subjects"]),
             "foreach:${targets}": len(params["targets"])}
    instances, deps = {}, {}
    for name, stage in dvc_yaml.items():
        body = stage.get("do", stage)
        if not CMD.search(body["cmd"]):
            continue  # the code stage: no stages/ command
        instances[name] = pairs if "matrix" in stage else count.get(f"foreach:{stage.get('foreach')}", 1)
        command = CMD.search(body["cmd"]).group(1)
        deps[name] = {by: set(code_deps(command, by, tree)) for by in ("module", "package")}
    modules = sorted(p.relative_to(tree).as_posix() for p in (tree / "dancepipe").rglob("*.py")
                     if "__pycache__" not in p.parts)

    def reruns(module: str, by: str) -> int:
        key = module if by == "module" or module.count("/") == 1 else "/".join(module.split("/")[:2])
        return sum(instances[n] for n in instances if key in deps[n][by])

    rows = [(m, reruns(m, "module"), reruns(m, "package")) for m in modules]
    total = sum(instances.values())
    print(f"code deps: an edit to one library module reruns directly, of the shipped catalog's {total} stages "
          f"(mean over its {len(modules)} modules): by module (the manifests) "
          f"{statistics.mean(r[1] for r in rows):.1f}, "
          f"by package {statistics.mean(r[2] for r in rows):.1f}")
    by_package: dict[str, list[tuple[str, int, int]]] = {}
    for row in rows:
        by_package.setdefault("/".join(row[0].split("/")[:2]) if row[0].count("/") > 1 else "top level", []).append(row)
    for package, group in sorted(by_package.items()):
        widest = max(group, key=lambda r: r[2] - r[1])
        print(f"  {package:20s} {len(group):2d} modules: by module {statistics.mean(r[1] for r in group):5.1f}, "
              f"by package {statistics.mean(r[2] for r in group):5.1f} stages "
              f"(most added: {widest[0]} {widest[1]} -> {widest[2]})")


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``1x3,5x20`` -> [(1, 3), (5, 20)]."""
    try:
        sizes = [tuple(int(n) for n in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a list like 1x3,5x20") from None
    if any(len(s) != 2 or min(s) < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"'{text}' is not a list like 1x3,5x20")
    return sizes  # type: ignore[return-value]


def parse_real_dirs(text: str) -> tuple[int, int, int] | None:
    """``1x10x2000`` -> (1, 10, 2000); ``0x0x0`` -> None."""
    try:
        parts = tuple(int(n) for n in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not like 1x10x2000") from None
    if len(parts) != 3 or min(parts) < 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not like 1x10x2000")
    return None if min(parts) == 0 else parts  # type: ignore[return-value]


def print_table(title: str, rows: list[CatalogRow]) -> None:
    print(f"\n{title}\n| catalog | stages | dvc.lock | no-op dvc repro | dvc status |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.label.strip()} | {r.stages} | {r.lock_lines:,} lines, {r.lock_kb:.0f} KB | {r.repro} | {r.status} |")


def demo_section(root: Path, args: argparse.Namespace, anchor: Timing) -> CatalogRow:
    """The real pipeline reproduced on the shortened demo clips (1 target x 3 dances): its no-op figures."""
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
    row = measure_catalog(f"demo, real outputs ({demo_files} files, {demo_bytes / 1e6:.1f} MB)", demo, 1, 3,
                          args.repeats)
    print(f"  {verdict(row.repro, row.status, 3)}; wall ratio to anchor {row.repro.wall / anchor.wall:.1f}x / "
          f"{row.status.wall / anchor.wall:.1f}x")
    return row


def files_section(root: Path, args: argparse.Namespace) -> Path:
    """Two stages of ``--files`` small images each: first and no-op figures, and cache settings."""
    synth = make_synthetic(root / "synthetic", args.files)
    t = time.perf_counter()
    r = repro(synth)
    assert r.ran == {"frames", "labels"}, r.output[-2000:]
    first = time.perf_counter() - t
    s_repro, s_status = noop_figures(synth, args.repeats)
    print(f"synthetic ({2 * args.files} files): first repro {first:.1f} s; no-op repro {s_repro}, "
          f"status {s_status}; {verdict(s_repro, s_status, 10)}")
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
    return synth


def transfer_section(root: Path, args: argparse.Namespace, demo: Path | None, synth: Path | None) -> None:
    print("transfer throughput (first push to an empty remote, pull into an empty cache):")
    if synth is None or args.transfer_files != args.files:
        synth = make_synthetic(root / "synthetic-transfer", args.transfer_files)
        repro(synth)
    projects = [("synthetic", synth)] + ([("demo", demo)] if demo else [])
    with seaweedfs(root / "seaweedfs", bucket="bench") as server:
        for name, project in projects:
            s3 = transfer(project, "s3", s3_setup(server, name), root / f"xfer-s3-{name}")
            local = transfer(project, "dir", [["remote", "add", "dir", str(root / f"remote-{name}")]],
                             root / f"xfer-dir-{name}")
            show_transfer(name, s3, local)


SECTIONS = ("code", "demo", "catalog", "files", "transfer")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=SECTIONS,
                    help="run only this section (repeatable; default: all)")
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes("1x3,1x10,3x10,5x20"),
                    help="synthetic catalogs, targets x dances (default 1x3,1x10,3x10,5x20)")
    ap.add_argument("--real-dirs", type=parse_real_dirs, default=parse_real_dirs("1x10x2000"),
                    help="catalog: also a TxDxN catalog whose output directories hold N files each, as real "
                         "frames and labels do (2000: a 67-s target at 30 fps); 0x0x0 leaves it out")
    ap.add_argument("--files-per-dir", type=int, default=3,
                    help="files in each directory output of the synthetic catalogs")
    ap.add_argument("--baseline-tree", type=Path, default=None,
                    help="a git checkout of another revision: its catalog figures too, in the same run")
    ap.add_argument("--baseline-pure-yaml", action="store_true",
                    help="measure the baseline tree without ruamel.yaml's C parser (as before ruamel.yaml.clib)")
    ap.add_argument("--files", type=int, default=20_000, help="files per synthetic stage output")
    ap.add_argument("--transfer-files", type=int, default=2_000,
                    help="files per stage in the synthetic project used for push/pull throughput")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per figure (median reported)")
    ap.add_argument("--full-demo", action="store_true", help="use the full demo clips (slower repro)")
    ap.add_argument("--demo-project", type=Path, default=None,
                    help="an already reproduced project copy to reuse instead of building one")
    ap.add_argument("--workdir", type=Path, default=None, help="where to build (default: a temp dir)")
    args = ap.parse_args()
    sections = set(args.only or SECTIONS)

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_dvc-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"bench_dvc in {root} (python {sys.version.split()[0]}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores)", flush=True)

    anchor = median_time(lambda: dvc(root, "--version"), args.repeats)
    print(f"anchor: dvc --version {anchor}")

    if "code" in sections:
        code_granularity_section()
    demo = demo_row = None
    if "demo" in sections:
        demo_row = demo_section(root, args, anchor)
        demo = args.demo_project or root / "demo"
    if "catalog" in sections:
        trees = [("this tree", REPO, "", False)]
        if args.baseline_tree:
            trees.insert(0, (f"baseline {args.baseline_tree}" + (", pure-Python YAML" if args.baseline_pure_yaml
                                                                  else ""),
                             args.baseline_tree.resolve(), "-base", args.baseline_pure_yaml))
        for title, tree, tag, pure in trees:
            print(f"catalog scaling, {title} (real dvc.yaml, tiny outputs):", flush=True)
            with pure_python_yaml(root) if pure else nullcontext():
                rows = catalog_section(root, tree, args.repeats, args.files_per_dir, args.sizes, tag, targeted=not tag,
                                       real_dirs=args.real_dirs)
            if tree == REPO and demo_row:
                rows.insert(0, demo_row)
            big = [r for r in rows if (r.targets, r.dances) == max(args.sizes)]
            if big:
                print(f"  largest catalog: {verdict(big[0].repro, big[0].status, 10)}")
            print_table(f"{title}, load average now {os.getloadavg()[0]:.2f}:", rows)
        if args.baseline_tree:
            t, d = max(args.sizes)
            pairs = [(f"{t} x {d}", root / f"catalog-base-{t}x{d}", root / f"catalog-{t}x{d}")]
            if args.real_dirs:
                t, d, n = args.real_dirs
                name = f"{t}x{d}-frames{n}"
                pairs.append((f"{t} x {d}, {n} files per frames/labels dir", root / f"catalog-base-{name}",
                              root / f"catalog-{name}"))
            interleaved(pairs, max(args.repeats, 5))
    synth = files_section(root, args) if "files" in sections else None
    if "transfer" in sections:
        transfer_section(root, args, demo, synth)
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
