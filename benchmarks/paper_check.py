"""`make paper-check`: the paper-scale recipe of docs/train.md, end to end at 512x1024 on this machine.

On a slice of the demo (the first :data:`TARGET_FRAMES` frames of the dancer, and
:data:`SOURCE_FRAMES` frames of the walker as the dance), in a temporary directory, through
the stage commands exactly as DVC runs them, with a params file that restricts the catalog
to these two people:

1. frames and training labels of the target at 512x1024; her profile, the walker's
   normalisation and transfer labels;
2. ``train`` with :data:`RECIPE` (the docs' command) for 3 steps, killed once the
   checkpoint of step 2 is on disk, then run again: it resumes and does step 3;
3. ``train_face`` for 2 steps, ``render`` of the walker's frames through G and the face
   GAN (with the side-by-side video), ``evaluate_transfer`` on that video and ``evaluate``
   on the held-out frames.

It prints the wall time and peak RSS of every stage, the time of one training step, the
parameter counts of the networks, and the memory a GPU needs for the recipe at batch 1 and
4 in fp32 and bf16/fp16 and for the 12/24/80 GB recipes of docs/train.md, computed by
:mod:`benchmarks.train_memory` ("computed": nothing here ran on a GPU). Without network
access torchvision's VGG19 weights cannot load, so this run's perceptual loss uses the
offline ``pose_backbone`` feature net; the computed GPU figures are for ``vgg19``.

    python -m benchmarks.paper_check            # needs data/subjects/{dancer,walker}
    python -m benchmarks.paper_check --keep /tmp/paper   # keep the run's files

Exit status 0 when every stage succeeded; otherwise 1 with one sentence naming the stage
and its log.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]

# docs/train.md "Paper-scale training on GPUs": the `dvc exp run -S ...` command, key for key
# (tests/test_paper_check.py checks that the docs say the same).
RECIPE: dict[str, Any] = {
    "frames.width": 512, "frames.height": 1024,
    "train.ngf": 64, "train.n_downsample": 3, "train.n_blocks": 9, "train.local_enhancer": True,
    "train.ndf": 64, "train.num_d": 3, "train.n_layers_d": 3, "train.feature_net": "vgg19",
    "train.lambda_l1": 0, "train.steps": 100000, "train.batch_size": 1,
    "train.checkpoint_every": 2000, "train.sample_every": 1000, "train.devices": 4,
}

# What this check changes: three steps (a checkpoint after the second), one process,
# the offline feature net, a face GAN of two steps, a fast encoder.
CHECK: dict[str, Any] = {
    "train.feature_net": "pose_backbone", "train.steps": 3, "train.checkpoint_every": 2,
    "train.sample_every": 1000, "train.devices": 1,
    "train_face.steps": 2, "render.preset": "ultrafast",
}

# The GPU recipes of docs/train.md "Paper-scale training on GPUs": (card, GiB it has,
# overrides of RECIPE). The memory of each is computed here; bf16 and fp16 need the same.
GPU_RECIPES: list[tuple[str, float, dict[str, Any]]] = [
    ("12 GB", 12, {"train.ngf": 32, "train.n_downsample": 4, "train.batch_size": 1}),
    ("24 GB", 24, {"train.batch_size": 2}),
    ("80 GB", 80, {"train.batch_size": 8}),
]

TARGET_FRAMES = 8  # 7 to train on, 1 held out (train.holdout_fraction 0.1)
SOURCE_FRAMES = 5  # the transfer labels' smoothing window
KILL_AFTER = 2  # the first train run is killed once this step's checkpoint exists

Row = tuple[str, ...]


class CheckFailed(Exception):
    """A stage of the check failed; the message is the one sentence to print."""


# --- inputs -----------------------------------------------------------------------------

def slice_subject(src: Path, out: Path, count: int) -> int:
    """Write the first ``count`` frames of the subject directory ``src`` as a subject directory ``out``.

    The video is re-encoded (H.264, near-lossless) and the pose table cut to the same
    frames with the new video's timestamps; returns the number of frames written.
    """
    from dancepipe.pose.keypoints import read_table, write_table
    from dancepipe.video.decode import iter_frames, probe, resolve_video
    from dancepipe.video.encode import mp4_writer

    meta = json.loads((src / "meta.json").read_text())
    out.mkdir(parents=True)
    video = out / "video.mp4"
    stamps: list[float] = []
    info = probe(resolve_video(src))
    with mp4_writer(video, width=info.width, height=info.height, fps=info.fps, crf=10, preset="ultrafast") as w:
        for frame in iter_frames(resolve_video(src)):
            if frame.index >= count:
                break
            w.write(frame.image)
    for frame in iter_frames(video):
        stamps.append(frame.timestamp)
    df, table_meta = read_table(src / "poses.parquet")
    df = df[df["frame"] < len(stamps)].sort_values("frame").reset_index(drop=True)
    df["timestamp"] = np.asarray(stamps[:len(df)], dtype=np.float64)
    write_table(df, out / "poses.parquet", table_meta, schema=pq.read_schema(src / "poses.parquet").remove_metadata())
    new = probe(video).to_dict()
    (out / "meta.json").write_text(json.dumps({**new, "file": video.name, "origin": meta.get("origin"),
                                               "sliced_from": str(src), "frames": len(stamps)}, indent=2))
    return len(stamps)


def slice_poses(src: Path, out: Path, count: int) -> tuple[int, int]:
    """The first ``count`` consecutive rows of the pose table ``src`` that all show the person, to ``out``.

    Frame numbers are kept (they index the source video); returns (first, last) frame.
    """
    from dancepipe.pose.keypoints import read_table, write_table

    df, meta = read_table(src)
    df = df.sort_values("frame").reset_index(drop=True)
    found = df["person_found"].to_numpy(dtype=bool)
    for start in range(len(df) - count + 1):
        if found[start:start + count].all():
            part = df.iloc[start:start + count].reset_index(drop=True)
            write_table(part, out, meta, schema=pq.read_schema(src).remove_metadata())
            return int(part["frame"].iloc[0]), int(part["frame"].iloc[-1])
    raise CheckFailed(f"{src}: no {count} consecutive frames show the person")


def set_key(params: dict[str, Any], dotted: str, value: Any) -> None:
    """``params['a']['b'] = value`` for ``dotted`` = ``a.b``."""
    *path, last = dotted.split(".")
    node = params
    for key in path:
        node = node.setdefault(key, {})
    node[last] = value


def write_params(base: Path, out: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` and the catalog cut to the dancer (target) and the walker (source)."""
    params = yaml.safe_load(base.read_text())
    subjects = {k: params["subjects"][k] for k in ("dancer", "walker")}
    params["subjects"] = subjects
    params["videos"] = {v["video"]: params["videos"][v["video"]] for v in subjects.values()}
    params["targets"], params["sources"] = ["dancer"], ["walker"]
    for key, value in overrides.items():
        set_key(params, key, value)
    out.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


# --- running stages ---------------------------------------------------------------------

@dataclasses.dataclass
class Phase:
    """One stage command as run: wall time, peak RSS (bytes) and its output."""

    name: str
    seconds: float
    peak_rss: int
    output: str


def run_stage(name: str, script: str, args: Sequence[str], logs: Path,
              kill_when: Path | None = None, on_poll: Callable[[], None] | None = None) -> Phase:
    """Run ``python stages/<script>.py args`` from the repo root, as dvc.yaml does, and measure it.

    With ``kill_when`` the process is killed (SIGKILL) as soon as that file exists, and a
    kill is then the expected outcome; ``on_poll`` is called every 0.2 s meanwhile. Raises
    :class:`CheckFailed` otherwise on a non-zero exit.
    """
    log_path = logs / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, f"stages/{script}.py", *args], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        killed = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG if kill_when is not None else 0)
            if pid:
                break
            if on_poll is not None:
                on_poll()
            if not killed and kill_when is not None and kill_when.exists():
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    output = log_path.read_text()
    if kill_when is not None and not killed:
        raise CheckFailed(f"{name} ended (exit {proc.returncode}) before {kill_when.name} appeared; log: {log_path}")
    if kill_when is None and proc.returncode != 0:
        last = [line for line in output.splitlines() if line.strip()][-1:] or ["(no output)"]
        raise CheckFailed(f"{name} failed with exit status {proc.returncode}: {last[0]} (log: {log_path})")
    return Phase(name, seconds, usage.ru_maxrss * 1024, output)


class StepClock:
    """When each training step was logged, from the line count of a dvclive TSV (polled)."""

    def __init__(self, tsv: Path) -> None:
        self.tsv = tsv
        self.times: dict[int, float] = {}

    def __call__(self) -> None:
        try:
            steps = len(self.tsv.read_text().splitlines()) - 1  # a header, then one line a step
        except FileNotFoundError:
            return
        for step in range(1, steps + 1):
            self.times.setdefault(step, time.perf_counter())

    def seconds(self, step: int) -> float | None:
        """Time between the logs of ``step - 1`` and ``step`` (None if either was missed)."""
        if step in self.times and step - 1 in self.times:
            return self.times[step] - self.times[step - 1]
        return None


def param_count(state_dict: dict[str, Any] | None) -> int:
    return sum(int(v.numel()) for v in (state_dict or {}).values() if hasattr(v, "numel"))


# --- the table --------------------------------------------------------------------------

def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def format_table(title: str, header: Row | None, rows: Sequence[Row]) -> str:
    """A plain-text table: the title, the header and a rule (unless None), the rows; columns padded to fit."""
    shown = [header] if header is not None else []
    widths = [max(len(str(r[i])) for r in (*shown, *rows)) for i in range(len((shown or rows)[0]))]

    def line(r: Row) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

    head = [line(header), "  ".join("-" * w for w in widths)] if header is not None else []
    return "\n".join([title, *head, *(line(r) for r in rows)])


def recipe_config(overrides: dict[str, Any]):
    """The TrainConfig and (height, width) of RECIPE with ``overrides``."""
    from dancepipe.model.train import TrainConfig

    values = {**RECIPE, **overrides}
    train = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("train.")}
    return TrainConfig(**train), (values["frames.height"], values["frames.width"])


def memory_rows(cpu_precision: str, cpu_peak: int | None, cpu_feature_net: Any) -> list[Row]:
    """Computed memory: the recipe at batch 1 and 4, the GPU recipes, and this CPU run beside its measured RSS."""
    from benchmarks.train_memory import estimate, vgg19_meta

    vgg = vgg19_meta()
    rows: list[Row] = []

    def row(what: str, cfg: Any, size: tuple[int, int], batch: int, precision: str, net: Any,
            measured: str = "") -> Row:
        m = estimate(cfg, size[0], size[1], batch, precision, net)
        arch = (f"{size[1]}x{size[0]}, ngf {cfg.ngf}, ds {cfg.n_downsample}, "
                f"{'local' if cfg.local_enhancer else 'global'}, {cfg.feature_net}")
        return (what, arch, str(batch), precision, gib(m.state), gib(m.activations + m.backward),
                gib(m.total), measured)

    cfg, size = recipe_config({})
    for batch in (1, 4):
        for precision in ("fp32", "bf16"):
            rows.append(row("paper recipe", cfg, size, batch, precision, vgg))
    for card, _, overrides in GPU_RECIPES:
        cfg, size = recipe_config(overrides)
        rows.append(row(f"{card} GPU recipe", cfg, size, cfg.batch_size, "bf16", vgg))
    cfg, size = recipe_config({"train.n_downsample": 4})
    rows.append(row("the recipe with ds 4", cfg, size, 1, "bf16", vgg))
    cfg, size = recipe_config(CHECK)
    rows.append(row("this CPU run", cfg, size, 1, cpu_precision, cpu_feature_net,
                    f"peak RSS {gib(cpu_peak)}" if cpu_peak else ""))
    return rows


# --- the check --------------------------------------------------------------------------

@dataclasses.dataclass
class Run:
    """What the stages did, for :func:`report`; the files are under ``work``."""

    work: Path
    values: dict[str, Any]  # the params file the stages read
    device: str
    precision: str
    frames: int  # of the target slice
    source_frames: tuple[int, int]  # first and last frame of the dance
    phases: list[Phase]
    step_seconds: float | None  # step KILL_AFTER, from the dvclive log
    wall: float


def run_check(work: Path, target: Path, source: Path, params_file: Path) -> Run:
    """Slice the demo and run every stage into ``work``."""
    from dancepipe.hardware.devices import MachineFacts, choose_device
    from dancepipe.hardware.precision import choose_precision

    t_start = time.perf_counter()
    logs = work / "logs"
    logs.mkdir(parents=True)
    params = work / "params.yaml"
    values = write_params(params_file, params, {**RECIPE, **CHECK})
    facts = MachineFacts.from_torch()
    device = choose_device(values["train"]["device"], facts, "train.device")
    precision = choose_precision(values["train"]["amp"], device, facts, "train.amp")

    subj = work / "subjects" / "dancer"
    n = slice_subject(target, subj, TARGET_FRAMES)
    src_poses = work / "walker_poses.parquet"
    first, last = slice_poses(source / "poses.parquet", src_poses, SOURCE_FRAMES)
    p = ["--params", str(params)]
    phases: list[Phase] = []

    def stage(name: str, script: str, *args: str, kill_when: Path | None = None,
              on_poll: Callable[[], None] | None = None, params_option: bool = True) -> Phase:
        phase = run_stage(name, script, [*args, *(p if params_option else [])], logs, kill_when, on_poll)
        phases.append(phase)
        print(f"paper-check: {name}: {phase.seconds:.0f} s, peak RSS {gib(phase.peak_rss)}", flush=True)
        return phase

    frames, labels = work / "frames", work / "labels" / "train"
    stage("frames", "frames", "--video", str(subj), "--poses", str(subj / "poses.parquet"), "--out", str(frames))
    stage("labels_train", "labels", "--kind", "train", "--poses", str(subj / "poses.parquet"),
          "--frames", str(frames), "--out", str(labels))
    profile, norm = work / "profile.json", work / "norm.json"
    stage("profile", "target_profile", "--poses", str(target / "poses.parquet"), "--out", str(profile),
          params_option=False)
    transfer = work / "labels" / "transfer"
    stage("labels_transfer", "labels", "--kind", "transfer", "--poses", str(src_poses),
          "--target-poses", str(target / "poses.parquet"), "--frames", str(frames),
          "--norm", str(norm), "--profile", str(profile), "--out", str(transfer))

    models = work / "models"
    ckpts, gen, face = models / "checkpoints", models / "generator.pt", models / "face.pt"
    train_args = ("--frames", str(frames), "--labels", str(labels), "--out", str(gen),
                  "--checkpoints", str(ckpts), "--logdir", str(work / "dvclive" / "train"))
    clock = StepClock(work / "dvclive" / "train" / "plots" / "metrics" / "loss_g.tsv")
    stage("train (killed after step 2)", "train", *train_args,
          kill_when=ckpts / f"state_{KILL_AFTER:06d}.pt", on_poll=clock)
    resumed = stage("train (resumed to step 3)", "train", *train_args)
    if f"resumed from step {KILL_AFTER}" not in resumed.output:
        raise CheckFailed(f"the second train run did not resume from step {KILL_AFTER} (log: {logs})")
    stage("train_face", "train_face", "--generator", str(gen), "--frames", str(frames), "--labels", str(labels),
          "--out", str(face), "--logdir", str(work / "dvclive" / "train_face"))
    video, sbs = work / "outputs" / "walker.mp4", work / "outputs" / "side_by_side.mp4"
    stage("render", "render", "--generator", str(gen), "--face", str(face), "--labels", str(transfer),
          "--source-video", str(source), "--source-poses", str(source / "poses.parquet"),
          "--out", str(video), "--side-by-side", str(sbs))
    stage("evaluate_transfer", "evaluate_transfer", "--labels", str(transfer), "--video", str(video),
          "--side-by-side", str(sbs), "--metrics-dir", str(work / "metrics" / "transfer"),
          "--report", str(work / "outputs" / "walker.html"), "--empty", str(values["render"]["empty"]))
    stage("evaluate", "evaluate", "--generator", str(gen), "--face", str(face), "--frames", str(frames),
          "--labels", str(labels), "--metrics-dir", str(work / "metrics" / "holdout"),
          "--report", str(work / "outputs" / "held-out.html"))
    return Run(work=work, values=values, device=str(device), precision=precision, frames=n,
               source_frames=(first, last), phases=phases, step_seconds=clock.seconds(KILL_AFTER),
               wall=time.perf_counter() - t_start)


def report(run: Run) -> str:
    """The tables ``make paper-check`` prints, from a finished :class:`Run`."""
    import torch

    from dancepipe.model.checkpoint import read_file
    from dancepipe.model.features import build_feature_net
    from dancepipe.video.decode import probe

    work = run.work
    models = work / "models"
    train_metrics = json.loads((work / "dvclive" / "train" / "metrics.json").read_text())
    transfer_metrics = json.loads((work / "metrics" / "transfer" / "transfer.json").read_text())
    holdout_metrics = json.loads((work / "metrics" / "holdout" / "eval.json").read_text())
    weights = torch.load(models / "checkpoints" / f"step_{KILL_AFTER:06d}.pt", map_location="cpu",
                         weights_only=True, mmap=True)
    g_params, d_params = param_count(weights["state_dict"]), param_count(weights["discriminator"])
    held = len(weights["split"]["holdout_frames"])
    del weights
    generator = torch.load(models / "generator.pt", map_location="cpu", weights_only=True, mmap=True)
    final_step = generator["step"]
    del generator
    faces = read_file(models / "face.pt", "dancepipe.face/1")
    out_info = probe(work / "outputs" / "walker.mp4")
    sbs_info = probe(work / "outputs" / "side_by_side.mp4")
    killed, resumed = (next(ph for ph in run.phases if ph.name.startswith(f"train ({w}")) for w in ("killed", "resumed"))
    peak_train = max(killed.peak_rss, resumed.peak_rss)
    first, last = run.source_frames
    rows = [
        ("device, precision", f"{run.device}, {run.precision} (train.amp: auto), torch {torch.__version__}, "
                              f"{torch.get_num_threads()} threads"),
        ("recipe kept (docs/train.md)", " ".join(f"{k}={v}" for k, v in RECIPE.items() if k not in CHECK)),
        ("changed for this check", " ".join(f"{k}={v}" for k, v in CHECK.items())),
        ("", "(torchvision's VGG19 weights cannot be downloaded here: the computed GPU figures are for vgg19)"),
        ("slice", f"dancer frames 0-{run.frames - 1} (train on {run.frames - held}, hold out {held}); "
                  f"walker frames {first}-{last} as the dance"),
        ("train step", f"{_fig(run.step_seconds, '.0f')} s (step {KILL_AFTER}, batch 1: two 512x1024 frames); "
                       f"step 3 after the resume, with the sample grid: {float(train_metrics['train_seconds']):.0f} s"),
        ("train peak RSS", f"{gib(peak_train)} (killed run {gib(killed.peak_rss)}, resumed run "
                           f"{gib(resumed.peak_rss)}: the whole process, checkpoint loading and saving included)"),
        ("parameters", f"G {g_params / 1e6:.1f} M, D {d_params / 1e6:.1f} M ({run.values['train']['num_d']} scales), "
                       f"face G {param_count(faces.get('state_dict')) / 1e6:.2f} M"),
        ("checkpoint", f"step_{KILL_AFTER:06d}.pt written, the run killed, resumed: generator.pt at step {final_step}"),
        ("face GAN", f"{faces['arch'].get('crop_size')} px crops, {faces['train'].get('steps')} steps"),
        ("render", f"{out_info.frame_count} frames {out_info.width}x{out_info.height}; side-by-side "
                   f"{sbs_info.width}x{sbs_info.height}"),
        ("evaluate_transfer", f"pose distance {_fig(transfer_metrics.get('pose_distance'))}, detected in "
                              f"{_fig(transfer_metrics.get('detection_rate'), '.0%')} of the frames"),
        ("evaluate (held-out)", f"box SSIM {_fig(holdout_metrics.get('ssim_box'))}, face SSIM "
                                f"{_fig(holdout_metrics.get('ssim_face'))} (after 3 steps)"),
    ]
    stages_rows = [(ph.name, f"{ph.seconds:.0f} s", gib(ph.peak_rss)) for ph in run.phases]
    memory = memory_rows(run.precision, peak_train, build_feature_net("pose_backbone", "cpu"))
    return "\n\n".join([
        format_table("paper-check: the paper-scale recipe at 512x1024 on this machine", None, rows),
        format_table("stages (as DVC runs them)", ("stage", "wall", "peak RSS"), stages_rows),
        format_table("training memory, computed (benchmarks/train_memory.py; nothing ran on a GPU)",
                     ("", "network", "batch", "precision", "weights+Adam", "activations", "total", "measured"),
                     memory),
        "total = weights, gradients, Adam moments, G's average, feature net (+ half-precision copies)"
        " + the generator update's saved activations + backward buffers; add the CUDA context and "
        "allocator slack (leave 10-20 % free). bf16 and fp16 need the same.",
        f"paper-check: done in {run.wall / 60:.1f} min",
    ])


def _fig(v: Any, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", type=Path, default=ROOT / "data/subjects/dancer", help="the target's subject directory")
    ap.add_argument("--source", type=Path, default=ROOT / "data/subjects/walker", help="the source's subject directory")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="params file the check starts from")
    ap.add_argument("--keep", type=Path, default=None, help="run in this new directory and keep it")
    args = ap.parse_args(argv)
    for d in (args.target, args.source):
        if not (d / "poses.parquet").is_file():
            print(f"paper-check: {d} is not a subject directory; run `dvc repro subject@dancer subject@walker` first",
                  file=sys.stderr)
            return 1
    if args.keep is not None and args.keep.exists():
        print(f"paper-check: {args.keep} exists; name a new directory for --keep", file=sys.stderr)
        return 1
    work = args.keep or Path(tempfile.mkdtemp(prefix="paper-check-"))
    try:
        text = report(run_check(work, args.target.resolve(), args.source.resolve(), args.params))
    except CheckFailed as e:
        print(f"paper-check: {e}; the run's files are kept in {work}", file=sys.stderr)
        return 1
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
