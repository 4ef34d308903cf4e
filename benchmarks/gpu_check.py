"""`make gpu-check`: what one CUDA machine does with dancepipe, as one table (at most 8 minutes).

Rows, in order (each a few seconds to a minute on a recent GPU):

* the GPU, and the precision ``train.amp: auto`` chooses on it
  (:func:`dancepipe.hardware.precision.choose_precision`);
* training throughput, our loop against the plain fp32 loop of
  :mod:`benchmarks.bench_train` (images/s and each loop's peak GPU memory), at 256x512 with
  the demo network of params.yaml (batch 4) and at 512x1024 with the paper recipe of
  docs/train.md (batch 1, VGG19's structure with untrained weights: the same cost, no
  download), the recipe's memory as :mod:`benchmarks.train_memory` computes it beside;
* the demo target trained for 200 steps by the train stage on CUDA, its face GAN for 100,
  and one render of the walker through both (the stage commands, in a temporary directory);
* the live mirror on that target (:mod:`benchmarks.bench_live`: frames/s and latency with the
  dancer clip as the camera);
* with two or more GPUs, a 2-rank DDP run of the train stage under torchrun.

The demo's data (data/frames/dancer, data/labels/dancer/{train,transfer/walker},
data/subjects/walker) come from ``dvc repro labels_transfer@dancer-walker`` when they are
missing. Without CUDA it prints one sentence and exits 2; a row that fails is marked in the
table and the exit status is 1.

    python -m benchmarks.gpu_check
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXIT_NO_CUDA = 2
DEMO_STEPS = 200
FACE_STEPS = 100
DDP_STEPS = 20
DEMO_DATA = ("data/frames/dancer", "data/labels/dancer/train", "data/labels/dancer/transfer/walker",
             "data/subjects/walker")

Row = tuple[str, str, str]


def no_cuda_sentence(torch_version: str, cuda_build: str | None) -> str:
    """The one sentence printed where no CUDA GPU is visible."""
    build = f"a CUDA {cuda_build} build" if cuda_build else "a CPU-only build"
    return (f"gpu-check: no CUDA GPU is visible to torch {torch_version} ({build}), so there is nothing "
            f"to check here; run `make gpu-check` on a machine with an NVIDIA GPU.")


def images_per_s(batch: int, steps: int, seconds: float) -> float:
    """Generated frames per second: each step makes two frames per pair."""
    return 2 * batch * steps / seconds if seconds > 0 else 0.0


def progress(row: Row) -> None:
    """One finished row on stderr as it comes (the table follows on stdout at the end)."""
    print("gpu-check: " + " | ".join(c for c in row if c), file=sys.stderr, flush=True)


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


# --- throughput -------------------------------------------------------------------------

@dataclasses.dataclass
class LoopResult:
    images_per_s: float
    peak_bytes: int


def time_loop(build: Callable[[], Callable[[int], None]], device: Any, warmup: int, steps: int,
              rounds: int, batch: int) -> LoopResult:
    """Build one training loop alone on the GPU, warm it up, time it; its own peak memory (0 off CUDA)."""
    import torch

    from benchmarks.bench_train import measure

    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    run = build()
    run(warmup)
    rates = [images_per_s(batch, steps, measure(run, steps, device)) for _ in range(rounds)]
    peak = torch.cuda.max_memory_allocated(device) if cuda else 0
    del run
    if cuda:
        torch.cuda.empty_cache()
    return LoopResult(statistics.median(rates), peak)


def bench_rows(label: str, cfg: Any, height: int, width: int, device: Any, feature_net: Any,
               steps: tuple[int, int], computed: int | None) -> list[Row]:
    """Our loop and the fp32 reference at one size: two rows and the ratio."""
    from benchmarks.bench_train import make_ours, make_reference, synthetic_data

    data = synthetic_data(32, height, width)
    ours_steps, ref_steps = steps

    def build_ours() -> Callable[[int], None]:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its switches
            return make_ours(cfg, data, device, feature_net, 3 + 3 * ours_steps)

    ours = time_loop(build_ours, device, warmup=3, steps=ours_steps, rounds=3, batch=cfg.batch_size)
    ref = time_loop(lambda: make_reference(cfg, data, device, feature_net), device,
                    warmup=2, steps=ref_steps, rounds=2, batch=cfg.batch_size)
    note = f"; computed {mib(computed)}" if computed else ""
    progress((f"bench_train {label}", f"ours {ours.images_per_s:.1f}, fp32 {ref.images_per_s:.1f} images/s"))
    return [
        (f"bench_train {label}", "ours", f"{ours.images_per_s:.1f} images/s, peak {mib(ours.peak_bytes)}{note}"),
        ("", "plain fp32 loop", f"{ref.images_per_s:.1f} images/s, peak {mib(ref.peak_bytes)}"),
        ("", "ours / fp32", f"{ours.images_per_s / ref.images_per_s:.2f}x"),
    ]


def untrained_vgg19(device: Any) -> Any:
    """The ``vgg19`` feature net with torchvision's random initial weights: the cost of the real one, no download."""
    from torchvision.models import vgg19

    from dancepipe.model.features import VGG19Features

    return VGG19Features(vgg19(weights=None).features).freeze().to(device)


def throughput_rows(device: Any) -> list[Row]:
    from benchmarks.paper_check import recipe_config
    from benchmarks.train_memory import estimate, vgg19_meta
    from dancepipe.config import load_params
    from dancepipe.model.features import build_feature_net
    from dancepipe.model.train import TrainConfig, resolve_switches

    demo = TrainConfig(**{**load_params(ROOT / "params.yaml")["train"], "batch_size": 4})
    rows = bench_rows("256x512, demo network", demo, 512, 256, device,
                      build_feature_net(demo.feature_net, device), (10, 5), None)
    paper, (h, w) = recipe_config({"train.devices": 1})
    vgg = untrained_vgg19(device)
    precision = resolve_switches(paper, device).precision
    computed = estimate(paper, h, w, paper.batch_size, precision, vgg19_meta()).total
    rows += bench_rows(f"{w}x{h}, paper recipe", paper, h, w, device, vgg, (10, 3), computed)
    return rows


# --- stage runs ---------------------------------------------------------------------------

def stage(script: str, args: Sequence[str], logs: Path, name: str) -> tuple[float, str]:
    """Run ``python stages/<script>.py args`` from the repo root, as dvc.yaml does; (seconds, output).

    Raises RuntimeError with the last line of its output when it fails.
    """
    cmd = [sys.executable, f"stages/{script}.py", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    out = done.stdout + done.stderr
    (logs / f"{name}.log").write_text(out)
    if done.returncode != 0:
        last = [line for line in out.splitlines() if line.strip()][-1:] or ["(no output)"]
        raise RuntimeError(f"exit {done.returncode}: {last[0]}")
    return seconds, out


def ensure_demo_data() -> None:
    """Produce the demo's frames, labels and the walker when missing (dvc repro)."""
    if all((ROOT / p).exists() for p in DEMO_DATA):
        return
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(["dvc", "repro", "labels_transfer@dancer-walker"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()][-1:] or [""]
        raise RuntimeError(f"dvc repro labels_transfer@dancer-walker failed: {last[0]}")


def pipeline_rows(work: Path, gpus: int, data: Path = ROOT) -> list[Row]:
    """200 demo steps, the face GAN, one render; a 2-rank DDP run with two GPUs (demo data under ``data``)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(steps=DEMO_STEPS, checkpoint_every=DEMO_STEPS, sample_every=DEMO_STEPS)
    params["train_face"]["steps"] = FACE_STEPS
    pfile = work / "params.yaml"
    pfile.write_text(yaml.safe_dump(params, sort_keys=False))
    logs = work / "logs"
    logs.mkdir()
    frames, labels = data / "data/frames/dancer", data / "data/labels/dancer/train"
    gen, face = work / "generator.pt", work / "face.pt"
    p = ["--params", str(pfile)]
    rows: list[Row] = []

    def attempt(what: str, setting: str, fn: Callable[[], str]) -> bool:
        try:
            rows.append((what, setting, fn()))
        except RuntimeError as e:
            rows.append((what, setting, f"FAILED: {e} (log in {logs})"))
        progress(rows[-1])
        return not rows[-1][2].startswith("FAILED")

    def train() -> str:
        s, _ = stage("train", ["--frames", str(frames), "--labels", str(labels), "--out", str(gen),
                      "--checkpoints", str(work / "ckpt"), "--logdir", str(work / "live"), *p], logs, "train")
        m = json.loads((work / "live" / "metrics.json").read_text())
        return (f"{s:.0f} s wall, {m['images_per_s']:.0f} images/s, held-out L1 {m.get('holdout_l1', float('nan')):.4f}")

    def train_face() -> str:
        s, _ = stage("train_face", ["--generator", str(gen), "--frames", str(frames), "--labels", str(labels),
                      "--out", str(face), "--logdir", str(work / "live_face"), *p], logs, "train_face")
        return f"{s:.0f} s wall"

    def render() -> str:
        walker = data / "data/subjects/walker"
        s, out = stage("render", ["--generator", str(gen), "--face", str(face),
                        "--labels", str(data / "data/labels/dancer/transfer/walker"), "--source-video", str(walker),
                        "--source-poses", str(walker / "poses.parquet"), "--out", str(work / "walker.mp4"),
                        "--side-by-side", str(work / "sbs.mp4"), *p], logs, "render")
        summary = [line for line in out.splitlines() if line.startswith("render:")]
        return f"{s:.0f} s wall; " + (summary[-1][len("render: "):].split(";")[0] if summary else "")

    def live() -> str:  # bench_live on the model just trained, laid out as the pipeline's models/
        models = work / "models" / "dancer"
        models.mkdir(parents=True)
        shutil.copyfile(gen, models / "generator.pt")
        shutil.copyfile(face, models / "face.pt")
        done = subprocess.run([sys.executable, "-m", "benchmarks.bench_live", "--models-dir", str(work / "models"),
                               "--data-dir", str(data / "data"), "--params", str(pfile), "--device", "cuda",
                               "--seconds", "10", "--no-anchor", "--no-compiled"], cwd=ROOT, capture_output=True, text=True)
        (logs / "live.log").write_text(done.stdout + done.stderr)
        ours = [line for line in done.stdout.splitlines() if line.startswith("ours")]
        if done.returncode != 0 or not ours:
            last = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()][-1:] or [""]
            raise RuntimeError(f"bench_live failed: {last[0]}")
        return ours[-1].split("]: ", 1)[-1].split("; median")[0]

    if attempt("demo training", f"{DEMO_STEPS} steps, 128x192, train stage", train):
        if attempt("face GAN", f"{FACE_STEPS} steps, train_face stage", train_face):
            attempt("render", "walker through G and the face GAN, render stage", render)
            attempt("live mirror", "bench_live: the dancer clip as the camera, 10 s", live)
    if gpus >= 2:
        ddp = dict(params)
        ddp["train"] = {**params["train"], "steps": DDP_STEPS, "devices": 2}
        dfile = work / "params_ddp.yaml"
        dfile.write_text(yaml.safe_dump(ddp, sort_keys=False))

        def ddp_run() -> str:  # train.devices: 2 relaunches the stage under torchrun --standalone
            s, out = stage("train", ["--frames", str(frames), "--labels", str(labels), "--out", str(work / "ddp.pt"),
                                     "--checkpoints", str(work / "ddp_ckpt"), "--logdir", str(work / "ddp_live"),
                                     "--params", str(dfile)], logs, "ddp")
            ok = "on 2 process(es)" in out
            return f"{s:.0f} s wall, {'2 ranks trained' if ok else 'ran, but not on 2 ranks'}"

        attempt("DDP smoke test", f"2 ranks on 2 GPUs, {DDP_STEPS} steps, torchrun", ddp_run)
    else:
        rows.append(("DDP smoke test", "needs 2 GPUs", f"skipped: {gpus} GPU visible"))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", type=Path, default=None, help="keep the run's files in this new directory")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(no_cuda_sentence(torch.__version__, torch.version.cuda))
        return EXIT_NO_CUDA
    from benchmarks.paper_check import format_table
    from dancepipe.errors import DancepipeError
    from dancepipe.hardware.devices import MachineFacts, choose_device
    from dancepipe.hardware.precision import choose_precision

    start = time.perf_counter()
    facts = MachineFacts.from_torch()
    device = choose_device("auto", facts, "train.device")
    props = torch.cuda.get_device_properties(device)
    precision = choose_precision("auto", device, facts, "train.amp")
    rows: list[Row] = [
        ("GPU", f"{device}, {facts.cuda_count} visible",
         f"{props.name}, capability {props.major}.{props.minor}, {props.total_memory / 2**30:.0f} GiB"),
        ("precision", "train.amp: auto", f"{precision}; torch {torch.__version__}, CUDA {torch.version.cuda}"),
    ]
    failed = False
    try:
        rows += throughput_rows(device)
    except (DancepipeError, RuntimeError, ValueError) as e:  # out of memory on a small card, weights missing
        rows.append(("bench_train", "", f"FAILED: {e.__class__.__name__}: {(str(e).splitlines() or [''])[0]}"))
        failed = True
    work = args.keep or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        ensure_demo_data()
        rows += pipeline_rows(work, facts.cuda_count)
    except RuntimeError as e:
        rows.append(("demo data", "dvc repro", f"FAILED: {e}"))
    failed = failed or any(r[2].startswith("FAILED") for r in rows)
    rows.append(("total", "", f"{(time.perf_counter() - start) / 60:.1f} min"))
    print(format_table("gpu-check", ("check", "setting", "result"), rows))
    if args.keep is None and not failed:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
