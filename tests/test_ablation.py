"""The ablation table and its three comparisons, on known figures."""

from __future__ import annotations

from pathlib import Path

import yaml

from benchmarks.ablation import SWITCHES, TABLE_ORDER, VARIANTS, bars, table

REPO = Path(__file__).resolve().parents[1]


def _row(warp: float, face: float, transfer: float) -> dict:
    return {"held": {"warp_error": warp, "ssim_face": face, "ssim_box": 0.8}, "transfer": {"pose_distance": transfer},
            "run": {"minutes": 1.5}}


def test_variants_end_on_the_defaults_and_cover_the_table():
    params = yaml.safe_load((REPO / "params.yaml").read_text())

    def value(key: str) -> str:
        node = params
        for part in key.split("."):
            node = node[part]
        return str(node).lower()  # as `dvc exp run -S` spells it

    # the last variant is params.yaml's defaults, so the workspace ends on the demo's own results
    assert VARIANTS[-1][2] == tuple(value(k) for k in SWITCHES)
    assert sorted(label for _, label, _ in VARIANTS) == sorted(TABLE_ORDER)


def test_bars_compare_the_right_pairs():
    rows = {"FBF": _row(0.010, 0.70, 0.09), "FBF+TS": _row(0.004, 0.72, 0.08),
            "FBF+TS+FG": _row(0.004, 0.75, 0.07), "FBF+TS+FG+RT": _row(0.004, 0.75, 0.072)}
    assert [ok for _, ok in bars(rows)] == [True, True, False]
    rows["FBF+TS"]["held"]["warp_error"] = 0.02
    rows["FBF+TS"]["held"]["ssim_face"] = 0.76
    assert [ok for _, ok in bars(rows)] == [False, False, False]
    del rows["FBF"]
    assert bars(rows)[0][1] is None


def test_table_lists_variants_in_the_papers_order():
    rows = {label: _row(0.004, 0.7, 0.07) for label in reversed(TABLE_ORDER)}
    lines = table(rows).splitlines()
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == TABLE_ORDER
    assert lines[2].endswith("| 0.0700 | 1.500 |") and "| 0.0040 |" in lines[2]
