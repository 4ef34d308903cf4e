"""The report index (outputs/report.html): every target and pair of the catalog, with its figures and links."""

from __future__ import annotations

import html.parser
import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from stages.report import main

CATALOG = {
    "videos": {"me": "inputs/me.mp4", "clip": "inputs/clip.mp4"},
    "subjects": {"me": {"video": "me"}, "walk": {"video": "clip"}, "jump": {"video": "clip", "person": [0.4, 0.2]}},
    "targets": ["me"],
    "sources": ["walk", "jump"],
}


class _Cells(html.parser.HTMLParser):
    """Table rows (cell texts) and link targets of a page, read back the way a browser would."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.links: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "a":
            self.links.append(dict(attrs)["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_index_lists_every_target_and_pair_with_their_figures(tmp_path: Path):
    metrics = tmp_path / "metrics" / "eval"
    (metrics / "me" / "walk").mkdir(parents=True)
    (metrics / "me" / "eval.json").write_text(json.dumps({"ssim_box": 0.8561, "baseline_ssim_box": 0.8129}))
    (metrics / "me" / "walk" / "transfer.json").write_text(json.dumps({"frames": 171, "pose_distance": 0.0691}))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(CATALOG))
    out = tmp_path / "outputs" / "report.html"
    res = CliRunner().invoke(main, ["--metrics", str(metrics), "--out", str(out), "--params", str(params)])
    assert res.exit_code == 0, res.output
    assert "report: 1 targets, 2 pairs" in res.output and "(1 evaluations not found)" in res.output
    page = _Cells()
    page.feed(out.read_text(encoding="utf-8"))
    held = next(r for r in page.rows if r[0] == "me" and len(r) == 8)  # target + 7 held-out columns
    assert held[1:3] == ["0.8561", "0.8129"] and set(held[3:]) == {"n/a"}  # keys the file lacks
    walk = next(r for r in page.rows if r[:2] == ["me", "walk"])
    assert walk[3:5] == ["171", "0.0691"]
    jump = next(r for r in page.rows if r[:2] == ["me", "jump"])
    assert set(jump[3:]) == {"—"}  # not evaluated yet: shown as missing, not as zero
    assert page.links == ["me/held-out.html", "me/walk.html", "me/walk.mp4", "me/jump.html", "me/jump.mp4"]
