"""The DVC promise, end to end on a throwaway copy of the project with small params.

``dvc repro`` builds everything once (shared by all tests in the session); a second
``dvc repro`` runs nothing; changing one param reruns exactly its stage and the stages
downstream of it; ``dvc exp run -S`` records an experiment whose evaluate metrics
``dvc exp show`` lists next to the baseline's, and ``dvc metrics diff`` / ``dvc params diff``
between the two runs report what their files hold; ``dvc plots show`` renders every plot
dvc.yaml declares; ``dvc dag`` is the designed graph.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.dvc_helpers import (
    clone_tree,
    dag_edges,
    dvc,
    file_digests,
    first_repro,
    git,
    make_project,
    repro,
    reproduced_project,
    set_params,
    stage_outputs,
    status_clean,
    tracked_outputs,
)

SUBJECTS = ("target", "source")
ALL_STAGES = {
    *(f"{s}@{x}" for s in ("ingest", "poses", "frames") for x in SUBJECTS),
    "normfit", "labels@train", "labels@transfer", "train", "train_face", "render", "evaluate",
}

# The designed data flow (docs/ARCHITECTURE.md): upstream -> downstream, direct edges only.
EXPECTED_EDGES = {
    *((f"ingest@{x}", f"poses@{x}") for x in SUBJECTS),
    *((f"ingest@{x}", f"frames@{x}") for x in SUBJECTS),
    *((f"poses@{x}", f"frames@{x}") for x in SUBJECTS),
    ("poses@target", "normfit"), ("poses@source", "normfit"),
    ("poses@target", "labels@train"), ("frames@target", "labels@train"),
    ("poses@source", "labels@transfer"), ("normfit", "labels@transfer"), ("frames@target", "labels@transfer"),
    ("frames@target", "train"), ("labels@train", "train"),
    ("train", "train_face"), ("frames@target", "train_face"), ("labels@train", "train_face"),
    ("train", "render"), ("train_face", "render"), ("labels@transfer", "render"),
    ("ingest@source", "render"), ("poses@source", "render"),
    ("train", "evaluate"), ("train_face", "evaluate"), ("frames@target", "evaluate"),
    ("labels@train", "evaluate"), ("labels@transfer", "evaluate"), ("render", "evaluate"),
}

AFTER_TRAIN = {"train", "train_face", "render", "evaluate"}


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reproduced_project(tmp_path_factory)


@pytest.mark.slow
def test_repro_from_scratch_builds_every_output(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    first = first_repro(tmp_path_factory)
    assert first.ran == ALL_STAGES, first.output[-3000:]
    outs = tracked_outputs(project)
    missing = [str(p) for p, _cached in outs if not p.exists()]
    assert not missing
    lock = (project / "dvc.lock").read_text(encoding="utf-8")
    for stage in ALL_STAGES:
        assert f"  {stage}:" in lock
    check_evaluate_outputs(project)


def check_evaluate_outputs(project: Path) -> None:
    """What evaluate wrote agrees with the pipeline's other outputs, counted here independently."""
    import av
    import pandas as pd
    import torch

    metrics = json.loads((project / "metrics" / "eval.json").read_text(encoding="utf-8"))
    # self-reenactment: one scored row per held-out frame the generator checkpoint records
    split = torch.load(project / "models" / "generator.pt", map_location="cpu", weights_only=False)["split"]
    holdout = split["holdout_frames"]
    assert holdout and not set(holdout) & set(split["train_frames"])
    per_frame = pd.read_csv(project / "metrics" / "eval_per_frame.csv")
    assert metrics["frames"] == len(holdout) and per_frame["frame"].tolist() == holdout
    for key in ("ssim", "ssim_box"):
        assert 0 < metrics[key] <= 1, (key, metrics[key])
        assert metrics[key] == pytest.approx(per_frame[key].mean(), abs=1e-5), key  # stored rounded
    for key in ("psnr", "psnr_box"):
        assert 0 < metrics[key] < 100, (key, metrics[key])
    assert metrics["baseline_frames"] <= len(holdout) and 0 < metrics["baseline_ssim"] <= 1
    # transfer: one row per frame of the rendered video (decoded here), trimmed labels aside
    transfer = json.loads((project / "metrics" / "transfer.json").read_text(encoding="utf-8"))
    with av.open(str(project / "outputs" / "transfer.mp4")) as container:
        video_frames = sum(1 for _ in container.decode(video=0))
    labels = len(list((project / "data" / "labels" / "transfer").glob("[0-9]*.png")))
    assert transfer["frames"] == video_frames == len(pd.read_csv(project / "metrics" / "transfer_per_frame.csv"))
    assert transfer["frames"] + transfer["trimmed_frames"] == labels
    assert transfer["empty_label_frames_generated"] == 0


@pytest.mark.slow
def test_second_repro_runs_nothing_and_status_is_clean(project: Path) -> None:
    again = repro(project)
    assert again.ran == set() and again.restored == set(), again.output[-3000:]
    assert again.skipped == ALL_STAGES
    clean, out = status_clean(project)
    assert clean, out


def declared_plots(project: Path) -> dict[str, dict[str, list[str]] | None]:
    """Every plot dvc.yaml declares, read from the file: top-level plot id → {file: y columns},
    and each stage plot's files (a directory stands for every file under it) → None."""
    import yaml

    spec = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))
    plots: dict[str, dict[str, list[str]] | None] = {}
    for item in spec.get("plots", []):
        (name, props), = item.items()
        plots[name] = {f: ([ys] if isinstance(ys, str) else list(ys)) for f, ys in props["y"].items()}
    for stage in spec["stages"].values():
        for entry in stage.get("plots", []) + stage.get("do", {}).get("plots", []):
            path = project / (entry if isinstance(entry, str) else next(iter(entry)))
            files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
            assert files, f"{path}: a declared plot with nothing to show"
            plots.update({str(f.relative_to(project)): None for f in files})
    return plots


def _rows(path: Path) -> int:
    import pandas as pd

    return len(pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ","))


@pytest.mark.slow
def test_plots_show_renders_every_declared_plot(project: Path, tmp_path: Path) -> None:
    """``dvc plots show`` on the reproduced project renders each plot dvc.yaml declares (top-level
    plots by id, stage plots by file), with every data row of the files behind it, and no error."""
    declared = declared_plots(project)
    assert {"eval_ssim", "eval_psnr", "pose_distance", "warp_error", "data/norm/normfit.png",
            "metrics/eval_per_frame.csv", "metrics/transfer_per_frame.csv"} <= set(declared)
    out = dvc(project, "plots", "show", "--json", "-o", str(tmp_path / "json")).stdout
    shown = json.loads(out.strip().splitlines()[-1])  # the JSON line, after any warnings
    assert not shown.get("errors"), shown.get("errors")
    data = shown["data"]
    assert set(data) == set(declared)
    for plot_id, files in declared.items():
        (rendered,) = data[plot_id]
        if files is not None:  # a top-level plot: one row per (file row, y column)
            values = rendered["content"]["data"]["values"]
            expected = {f"{Path(f).name}::{y}": _rows(project / f) for f, ys in files.items() for y in ys}
            got: dict[str, int] = {}
            for v in values:
                # DVC names the series "<file>::<column>", or just the column when one file is plotted
                series = v["filename::field"] if len(files) > 1 else f"{Path(next(iter(files))).name}::{v['field']}"
                got[series] = got.get(series, 0) + 1
                assert v["dvc_inferred_y_value"] == v[series.split("::")[1]], (plot_id, v)
            assert got == expected, plot_id
        elif plot_id.endswith(".png"):
            assert rendered["type"] == "image"
            assert Path(rendered["url"]).read_bytes() == (project / plot_id).read_bytes(), plot_id
        else:
            assert rendered["type"] == "vega"
            assert len(rendered["content"]["data"]["values"]) == _rows(project / plot_id), plot_id
    # the HTML page names every plot
    dvc(project, "plots", "show", "-o", str(tmp_path / "html"))
    html = (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
    assert [p for p in declared if p not in html] == []


def test_dag_is_the_designed_graph(tmp_path: Path) -> None:
    # Cheap: dvc dag needs only dvc.yaml (no clips under inputs/, which would add .dvc nodes).
    edges = dag_edges(make_project(tmp_path / "p"))
    assert edges == EXPECTED_EDGES, (
        f"unexpected: {sorted(edges - EXPECTED_EDGES)}; missing: {sorted(EXPECTED_EDGES - edges)}"
    )


# (param change, stages that must run). Everything else must be skipped.
PARAM_CASES = {
    "train param": ({"train.lr": 0.0005}, AFTER_TRAIN),
    "frame size": (
        {"frames.height": 112},
        {"frames@target", "frames@source", "labels@train", "labels@transfer", *AFTER_TRAIN},
    ),
    "transfer smoothing": ({"labels.transfer.window": 7}, {"labels@transfer", "render", "evaluate"}),
    "render param": ({"render.crf": 30}, {"render", "evaluate"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(PARAM_CASES))
def test_changing_one_param_reruns_exactly_its_stage_and_downstream(
    case: str, project: Path, tmp_path: Path
) -> None:
    change, expected = PARAM_CASES[case]
    work = clone_tree(project, tmp_path / "p")
    before = file_digests([p for p, cached in tracked_outputs(work) if cached], work)
    set_params(work, change)
    result = repro(work)
    assert result.ran == expected, f"ran {sorted(result.ran)}, expected {sorted(expected)}"
    assert result.restored == set()
    assert result.skipped == ALL_STAGES - expected
    clean, out = status_clean(work)
    assert clean, out
    # Outputs of the stages that did not run are untouched, byte for byte.
    after = file_digests([p for p, cached in tracked_outputs(work) if cached], work)
    rerun = [p for stage, outs in stage_outputs(work).items() if stage in expected for p in outs]
    kept = {k for k in before if not any((work / k).is_relative_to(p) for p in rerun)}
    assert kept and {k: after.get(k) for k in kept} == {k: before[k] for k in kept}


@pytest.mark.slow
def test_bad_param_stops_the_pipeline_and_checkout_restores(project: Path, tmp_path: Path) -> None:
    work = clone_tree(project, tmp_path / "p")
    params = (work / "params.yaml").read_text(encoding="utf-8")
    generator = (work / "models" / "generator.pt").read_bytes()
    set_params(work, {"train.steps": 0})
    proc = dvc(work, "repro", check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stdout.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "'train.steps' = 0" in errors[0] and ">= 1" in errors[0], proc.stdout[-3000:]
    assert "Running stage 'train_face'" not in proc.stdout
    # The stage wrote nothing (no temporary leftovers). DVC itself removed the stage's
    # old outputs before running it: cached ones come back from the DVC cache, the
    # git-tracked logs (cache: false) from git.
    assert not [p.name for p in (work / "models").iterdir() if ".tmp-" in p.name]
    (work / "params.yaml").write_text(params, encoding="utf-8")
    git(work, "checkout", "--", "dvclive")
    dvc(work, "checkout")
    clean, out = status_clean(work)
    assert clean, out
    assert (work / "models" / "generator.pt").read_bytes() == generator


def _exp_rows(show: Any) -> list[dict[str, Any]]:
    """Flatten ``dvc exp show --json`` (DVC 3) into baseline and experiment rows."""
    rows = []
    for baseline in show:
        rows.append(baseline)
        for exp in baseline.get("experiments") or []:
            rows.extend(exp.get("revs") or [])
    return rows


def _metrics(row: dict[str, Any], name: str = "eval.json") -> dict[str, Any]:
    data = (row.get("data") or {}).get("metrics") or {}
    return (data.get(f"metrics/{name}") or {}).get("data") or {}


def _plain(value: Any) -> Any:
    """A metric value for comparison: ints as floats, NaN as null, and nulls left out of mappings
    (``dvc exp show`` omits null metrics)."""
    if isinstance(value, dict):
        return {k: p for k, v in value.items() if (p := _plain(v)) is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    return None if value != value else float(value)


def _same(a: Any, b: Any) -> bool:
    """The same metrics, whether read by dvc or from the file."""
    return _plain(a) == _plain(b)


def _param(row: dict[str, Any], dotted: str) -> Any:
    node: Any = ((row.get("data") or {}).get("params") or {}).get("params.yaml", {}).get("data", {})
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


@pytest.mark.slow
def test_exp_run_records_metrics_for_both_runs(project: Path, tmp_path: Path) -> None:
    work = clone_tree(project, tmp_path / "p")
    proc = dvc(work, "exp", "run", "-S", "render.crf=28", "--name", "crf28")
    assert "Running stage 'render'" in proc.stdout
    assert "Running stage 'train'" not in proc.stdout
    show = json.loads(dvc(work, "exp", "show", "--json").stdout)
    rows = [r for r in _exp_rows(show) if r.get("rev") != "workspace"]
    baseline = next(r for r in rows if r.get("name") != "crf28" and _param(r, "render.crf") is not None)
    exp = next(r for r in rows if r.get("name") == "crf28")
    assert _param(baseline, "render.crf") != 28 and _param(exp, "render.crf") == 28
    base_m, exp_m = _metrics(baseline), _metrics(exp)
    assert base_m and exp_m, json.dumps(show)[:3000]
    # each row holds its own run's metrics: the baseline's are the committed file, the experiment's
    # the file its run left in the workspace
    committed = json.loads(git(work, "show", "HEAD:metrics/eval.json").stdout)
    assert _same(base_m, committed), {k: (base_m.get(k), committed.get(k)) for k in {*base_m, *committed}
                                      if _plain(base_m.get(k)) != _plain(committed.get(k))}
    assert _same(exp_m, json.loads((work / "metrics" / "eval.json").read_text(encoding="utf-8")))
    # render.crf changes the video, not the self-reenactment scored on generated held-out frames
    assert _same(exp_m, base_m)
    base_t, exp_t = _metrics(baseline, "transfer.json"), _metrics(exp, "transfer.json")
    assert _same(base_t, json.loads(git(work, "show", "HEAD:metrics/transfer.json").stdout))
    assert _same(exp_t, json.loads((work / "metrics" / "transfer.json").read_text(encoding="utf-8")))
    assert exp_t["frames"] == base_t["frames"] > 0
    check_diffs_between(work, "HEAD", "crf28", {"render.crf": (_param(baseline, "render.crf"), 28)})


def check_diffs_between(work: Path, old_rev: str, new_rev: str, params: dict[str, tuple[Any, Any]]) -> None:
    """``dvc params diff`` lists exactly ``params`` (key → (old, new)); ``dvc metrics diff`` gives, for
    every metrics file dvc.yaml declares, the values of the two runs' files (``new_rev``'s results
    are in the workspace), and without ``--all`` exactly the keys whose values differ."""
    import yaml

    diff = json.loads(dvc(work, "params", "diff", old_rev, new_rev, "--json").stdout)
    assert {k: (v["old"], v["new"]) for k, v in diff.get("params.yaml", {}).items()} == params
    assert set(diff) == {"params.yaml"}
    stages = yaml.safe_load((work / "dvc.yaml").read_text(encoding="utf-8"))["stages"].values()
    files = [next(iter(m)) if isinstance(m, dict) else m for st in stages for m in st.get("metrics", [])]
    assert "metrics/eval.json" in files and "metrics/transfer.json" in files
    every = json.loads(dvc(work, "metrics", "diff", old_rev, new_rev, "--all", "--json").stdout)
    changed = json.loads(dvc(work, "metrics", "diff", old_rev, new_rev, "--json").stdout)
    assert set(every) == set(files)
    for f in files:
        old = _plain(json.loads(git(work, "show", f"{old_rev}:{f}").stdout))
        new = _plain(json.loads((work / f).read_text(encoding="utf-8")))
        assert _plain({k: v["old"] for k, v in every[f].items()}) == old, f
        assert _plain({k: v["new"] for k, v in every[f].items()}) == new, f
        differ = {k for k in {*old, *new} if old.get(k) != new.get(k)}
        assert set(changed.get(f, {})) == differ, f
