"""The paper's ablation on the demo, as DVC experiments, printed as one table.

Everybody Dance Now (arXiv 1808.07371 v1, tables 1-3) compares frame-by-frame pix2pixHD
(FBF), + temporal smoothing (TS), + the face GAN (FG). This adds limb retargeting (RT),
which changes only the transfer labels. Each variant is one ``dvc exp run`` with its
switches set explicitly, so ``dvc exp show`` lists them beside each other and DVC's run
cache shares every stage two variants have in common (FBF+TS and FBF+TS+FG train the
same generator; +RT trains nothing).

| variant | ``train.temporal`` | ``train_face.enabled`` | ``labels.transfer.retarget`` |
|---|---|---|---|
| FBF | false | false | none |
| FBF+TS | true | false | none |
| FBF+TS+FG | true | true | none |
| FBF+TS+FG+RT | true | true | bones |

The variants run in an order that ends on the params.yaml defaults (FBF+TS+FG+RT), and params.yaml
is restored byte for byte afterwards, so the workspace holds the demo's own results
when the script is done. The table (held-out box/face SSIM and PSNR, pose distance,
warp error beside the real frames' floor, the nearest-neighbour baseline, transfer
detection and pose distance, minutes per variant) is printed and written to
``metrics/ablation.json`` and ``metrics/ablation.md``.

It measures the catalog's first (target, source) pair (``dvc exp run`` is given that
pair's two evaluate stages, so the other dances are not rendered per variant).

Run: ``make ablation`` (or ``python -m benchmarks.ablation``; ``--table-only`` reprints
the last table). It needs a git repository with the demo committed, as ``dvc exp``
does. Bars (issue 12), reported, never tuned for: TS has a lower warp error than FBF;
FG a higher face SSIM than FBF+TS; RT a lower transfer pose distance than FBF+TS+FG.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SWITCHES = ("train.temporal", "train_face.enabled", "labels.transfer.retarget")
# (experiment name, table label, switch values); the last one is params.yaml's default
VARIANTS: list[tuple[str, str, tuple[str, str, str]]] = [
    ("ablation-fbf", "FBF", ("false", "false", "none")),
    ("ablation-fbf-ts", "FBF+TS", ("true", "false", "none")),
    ("ablation-fbf-ts-fg", "FBF+TS+FG", ("true", "true", "none")),
    ("ablation-fbf-ts-fg-rt", "FBF+TS+FG+RT", ("true", "true", "bones")),
]
TABLE_ORDER = ["FBF", "FBF+TS", "FBF+TS+FG", "FBF+TS+FG+RT"]
COLUMNS: list[tuple[str, str, str]] = [  # (header, source: held | transfer | run, key)
    ("box SSIM", "held", "ssim_box"),
    ("face SSIM", "held", "ssim_face"),
    ("box PSNR", "held", "psnr_box"),
    ("face PSNR", "held", "psnr_face"),
    ("pose dist", "held", "pose_distance"),
    ("warp err", "held", "warp_error"),
    ("warp real", "held", "warp_error_real"),
    ("NN box SSIM", "held", "baseline_ssim_box"),
    ("NN face SSIM", "held", "baseline_ssim_face"),
    ("transfer detected", "transfer", "detection_rate"),
    ("transfer pose dist", "transfer", "pose_distance"),
    ("minutes", "run", "minutes"),
]


def _dvc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], check=check, text=True)


def first_pair(params_path: Path = Path("params.yaml")) -> tuple[str, str]:
    """The catalog's first (target, source): the pair the ablation measures."""
    from dancepipe.catalog import load_catalog

    return load_catalog(params_path).pairs()[0]


def run_variants(metrics_dir: Path) -> dict[str, dict[str, Any]]:
    """Run every variant as a named experiment; return their metrics by table label.

    Only the first (target, source) pair's evaluations and what they need run (``dvc exp
    run`` with those two stages as targets), so more dances in params.yaml cost nothing.
    """
    params = Path("params.yaml")
    saved = params.read_bytes()
    target, source = first_pair(params)
    stages = [f"evaluate@{target}", f"evaluate_transfer@{target}-{source}"]
    rows: dict[str, dict[str, Any]] = {}
    try:
        for name, label, values in VARIANTS:
            subprocess.run(["dvc", "exp", "remove", name], check=False, text=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # a rerun replaces it
            sets = [a for k, v in zip(SWITCHES, values, strict=True) for a in ("-S", f"{k}={v}")]
            print(f"== {label}: dvc exp run --name {name} {' '.join(sets)}", flush=True)
            t0 = time.perf_counter()
            _dvc("exp", "run", "--name", name, *sets, *stages)
            rows[label] = {
                "experiment": name, **dict(zip(SWITCHES, values, strict=True)), "pair": f"{target}-{source}",
                "held": json.loads((metrics_dir / target / "eval.json").read_text()),
                "transfer": json.loads((metrics_dir / target / source / "transfer.json").read_text()),
                "run": {"minutes": (time.perf_counter() - t0) / 60},
            }
    finally:
        params.write_bytes(saved)
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 0.1 else f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


def table(rows: dict[str, dict[str, Any]]) -> str:
    """The measured table in Markdown, variants in the paper's order."""
    head = "| variant | " + " | ".join(h for h, _, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for label in TABLE_ORDER:
        if label in rows:
            r = rows[label]
            lines.append(f"| {label} | " + " | ".join(_fmt(r[src].get(key)) for _, src, key in COLUMNS) + " |")
    return "\n".join(lines)


def bars(rows: dict[str, dict[str, Any]]) -> list[tuple[str, bool | None]]:
    """The issue's three comparisons; None where a figure is missing."""

    def get(label: str, src: str, key: str) -> float | None:
        v = rows.get(label, {}).get(src, {}).get(key)
        return None if v is None else float(v)

    def less(a: float | None, b: float | None) -> bool | None:
        return None if a is None or b is None else a < b

    return [
        ("TS lowers the warp error (FBF+TS < FBF)",
         less(get("FBF+TS", "held", "warp_error"), get("FBF", "held", "warp_error"))),
        ("FG raises the face SSIM (FBF+TS+FG > FBF+TS)",
         less(get("FBF+TS", "held", "ssim_face"), get("FBF+TS+FG", "held", "ssim_face"))),
        ("RT lowers the transfer pose distance (+RT < FBF+TS+FG)",
         less(get("FBF+TS+FG+RT", "transfer", "pose_distance"), get("FBF+TS+FG", "transfer", "pose_distance"))),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metrics", type=Path, default=Path("metrics/eval"),
                    help="the evaluations' metrics root (<target>/eval.json, <target>/<source>/transfer.json)")
    ap.add_argument("--out", type=Path, default=Path("metrics"), help="where ablation.json and ablation.md go")
    ap.add_argument("--table-only", action="store_true", help="reprint the table of the last run")
    args = ap.parse_args(argv)
    out_json = args.out / "ablation.json"
    if args.table_only:
        if not out_json.is_file():
            raise SystemExit(f"{out_json} does not exist: run `make ablation` first")
        rows = json.loads(out_json.read_text())["variants"]
    else:
        t0 = time.perf_counter()
        rows = run_variants(args.metrics)
        minutes = (time.perf_counter() - t0) / 60
        out_json.write_text(json.dumps({"variants": rows, "minutes": minutes}, indent=2) + "\n")
        print(f"ablation: {len(rows)} experiments in {minutes:.1f} min")
    text = table(rows)
    verdicts = bars(rows)
    text += "\n\n" + "\n".join(f"- {what}: {'yes' if ok else 'no' if ok is not None else '?'}" for what, ok in verdicts)
    (args.out / "ablation.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
