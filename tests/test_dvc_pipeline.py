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
    TEST_CATALOG,
    clone_tree,
    commit_all,
    dag_edges,
    dvc,
    env,
    file_digests,
    first_repro,
    git,
    make_project,
    repro,
    reproduced_project,
    set_catalog,
    set_params,
    stage_outputs,
    status_clean,
    tracked_outputs,
)


def stages_of(catalog: dict[str, Any]) -> set[str]:
    """Every stage name the matrix of ``catalog`` expands to."""
    videos, subjects = catalog["videos"], catalog["subjects"]
    targets, sources = catalog["targets"], catalog["sources"]
    pairs = [f"{t}-{s}" for t in targets for s in sources]
    return {
        *(f"{st}@{v}" for st in ("ingest", "poses") for v in videos),
        *(f"subject@{s}" for s in subjects),
        *(f"{st}@{t}" for st in ("frames", "profile", "footage", "labels_train", "train", "train_face", "evaluate")
          for t in targets),
        *(f"{st}@{p}" for st in ("labels_transfer", "render", "evaluate_transfer") for p in pairs),
        "report",
        "code",  # hashes the code once: one manifest per stage command (tools/dvc_deps.py)
    }


def expected_edges(catalog: dict[str, Any]) -> set[tuple[str, str]]:
    """The designed data flow (docs/ARCHITECTURE.md) of ``catalog``: upstream -> downstream, direct edges."""
    videos, subjects = catalog["videos"], catalog["subjects"]
    # the code stage's manifests feed every other stage
    edges = {("code", s) for s in stages_of(catalog) - {"code"}}
    edges |= {(f"ingest@{v}", f"poses@{v}") for v in videos}
    for name, entry in subjects.items():
        edges |= {(f"ingest@{entry['video']}", f"subject@{name}"), (f"poses@{entry['video']}", f"subject@{name}")}
    for t in catalog["targets"]:
        edges |= {(f"subject@{t}", f"frames@{t}"), (f"subject@{t}", f"labels_train@{t}"),
                  (f"frames@{t}", f"labels_train@{t}"), (f"frames@{t}", f"train@{t}"),
                  (f"labels_train@{t}", f"train@{t}"), (f"train@{t}", f"train_face@{t}"),
                  (f"frames@{t}", f"train_face@{t}"), (f"labels_train@{t}", f"train_face@{t}"),
                  (f"train@{t}", f"evaluate@{t}"), (f"train_face@{t}", f"evaluate@{t}"),
                  (f"frames@{t}", f"evaluate@{t}"), (f"labels_train@{t}", f"evaluate@{t}"),
                  (f"evaluate@{t}", "report"), (f"subject@{t}", f"profile@{t}"),
                  (f"subject@{t}", f"footage@{t}"), (f"footage@{t}", "report")}
        for s in catalog["sources"]:
            p = f"{t}-{s}"
            edges |= {(f"subject@{t}", f"labels_transfer@{p}"),  # the normfit: fitted to her keypoints
                      (f"subject@{s}", f"labels_transfer@{p}"), (f"frames@{t}", f"labels_transfer@{p}"),
                      (f"profile@{t}", f"labels_transfer@{p}"),
                      (f"train@{t}", f"render@{p}"), (f"train_face@{t}", f"render@{p}"),
                      (f"labels_transfer@{p}", f"render@{p}"), (f"subject@{s}", f"render@{p}"),
                      (f"labels_transfer@{p}", f"evaluate_transfer@{p}"), (f"render@{p}", f"evaluate_transfer@{p}"),
                      # the target's training labels give the dance's coverage, measured with the labels
                      (f"labels_train@{t}", f"labels_transfer@{p}"),
                      (f"evaluate_transfer@{p}", "report")}
    return edges


ALL_STAGES = stages_of(TEST_CATALOG)
T = TEST_CATALOG["targets"][0]
PAIRS = [f"{T}-{s}" for s in TEST_CATALOG["sources"]]
AFTER_TRAIN = {f"train@{T}", f"train_face@{T}", f"evaluate@{T}", "report",
               *(f"{st}@{p}" for st in ("render", "evaluate_transfer") for p in PAIRS)}


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

    root = project / "metrics" / "eval" / T
    metrics = json.loads((root / "eval.json").read_text(encoding="utf-8"))
    # self-reenactment: one scored row per held-out frame the generator checkpoint records
    split = torch.load(project / "models" / T / "generator.pt", map_location="cpu", weights_only=False)["split"]
    holdout = split["holdout_frames"]
    assert holdout and not set(holdout) & set(split["train_frames"])
    per_frame = pd.read_csv(root / "eval_per_frame.csv")
    assert metrics["frames"] == len(holdout) and per_frame["frame"].tolist() == holdout
    for key in ("ssim", "ssim_box"):
        assert 0 < metrics[key] <= 1, (key, metrics[key])
        assert metrics[key] == pytest.approx(per_frame[key].mean(), abs=1e-5), key  # stored rounded
    for key in ("psnr", "psnr_box"):
        assert 0 < metrics[key] < 100, (key, metrics[key])
    assert metrics["baseline_frames"] <= len(holdout) and 0 < metrics["baseline_ssim"] <= 1
    # transfer, per pair: one row per frame of the rendered video (decoded here), trimmed labels aside
    index = (project / "outputs" / "report.html").read_text(encoding="utf-8")
    assert f"<a href='{T}/held-out.html'>{T}</a>" in index and (project / "outputs" / T / "held-out.html").is_file()
    for source in TEST_CATALOG["sources"]:
        transfer = json.loads((root / source / "transfer.json").read_text(encoding="utf-8"))
        with av.open(str(project / "outputs" / T / f"{source}.mp4")) as container:
            video_frames = sum(1 for _ in container.decode(video=0))
        with av.open(str(project / "outputs" / T / "side_by_side" / f"{source}.mp4")) as container:
            assert sum(1 for _ in container.decode(video=0)) == video_frames
        labels = len(list((project / "data" / "labels" / T / "transfer" / source).glob("[0-9]*.png")))
        assert transfer["frames"] == video_frames == len(pd.read_csv(root / source / "transfer_per_frame.csv"))
        assert transfer["frames"] + transfer["trimmed_frames"] == labels
        assert transfer["empty_label_frames_generated"] == 0
        page = (project / "outputs" / T / f"{source}.html").read_text(encoding="utf-8")
        assert "source | stick figure | generated" in page  # its samples are side-by-side frames
        assert f"<a href='{T}/{source}.html'>{source}</a>" in index and f"{T}/{source}.mp4" in index
    # the two dances of the one sports2d clip follow two different people: the woman in front,
    # the man on the box behind her (his feet above the picture's 60 % line)
    height = json.loads((project / "data" / "videos" / "sports2d" / "meta.json").read_text())["height"]
    walker = pd.read_parquet(project / "data" / "subjects" / "walker" / "poses.parquet")
    jumper = pd.read_parquet(project / "data" / "subjects" / "jumper" / "poses.parquet")
    assert walker["person_found"].sum() > 30 and jumper["person_found"].sum() > 10
    assert (walker.loc[walker["person_found"], "box_y0"] > 0.45 * height).all()
    assert (jumper.loc[jumper["person_found"], "box_y1"] < 0.6 * height).all()


@pytest.mark.slow
def test_second_repro_runs_nothing_and_status_is_clean(project: Path) -> None:
    again = repro(project)
    assert again.ran == set() and again.restored == set(), again.output[-3000:]
    assert again.skipped == ALL_STAGES
    clean, out = status_clean(project)
    assert clean, out


def declared_plots(project: Path) -> dict[str, None]:
    """Every plot file the pipeline declares (a directory stands for every file under it) → None."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        paths = [o.def_path for st in repo.index.stages for o in st.outs if o.plot]
    plots: dict[str, None] = {}
    for rel in paths:
        path = project / rel
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        assert files, f"{path}: a declared plot with nothing to show"
        plots.update({str(f.relative_to(project)): None for f in files})
    return plots


def _rows(path: Path) -> int:
    import pandas as pd

    return len(pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ","))


@pytest.mark.slow
def test_plots_show_renders_every_declared_plot(project: Path, tmp_path: Path) -> None:
    """``dvc plots show`` on the reproduced project renders each plot the stages declare, for every
    target and pair, with every data row of the files behind it, and no error."""
    declared = declared_plots(project)
    assert {f"data/norm/{T}/walker.png", f"data/norm/{T}/jumper.png", f"metrics/eval/{T}/eval_per_frame.csv",
            f"metrics/eval/{T}/walker/transfer_per_frame.csv",
            f"metrics/eval/{T}/jumper/transfer_per_frame.csv"} <= set(declared)
    out = dvc(project, "plots", "show", "--json", "-o", str(tmp_path / "json")).stdout
    shown = json.loads(out.strip().splitlines()[-1])  # the JSON line, after any warnings
    assert not shown.get("errors"), shown.get("errors")
    data = shown["data"]
    assert set(data) == set(declared)
    for plot_id in declared:
        (rendered,) = data[plot_id]
        if plot_id.endswith(".png"):
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
    import yaml

    from tests.dvc_helpers import REPO

    expected = expected_edges(yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8")))
    edges = dag_edges(make_project(tmp_path / "p"))
    assert edges == expected, f"unexpected: {sorted(edges - expected)}; missing: {sorted(expected - edges)}"


# (param change, stages that must run). Everything else must be skipped.
PARAM_CASES = {
    "train param": ({"train.lr": 0.0005}, AFTER_TRAIN),
    "frame size": (
        {"frames.height": 112},
        {f"frames@{T}", f"labels_train@{T}", f"footage@{T}", *(f"labels_transfer@{p}" for p in PAIRS), *AFTER_TRAIN},
    ),
    "transfer smoothing": (
        {"labels.transfer.window": 7},
        {"report", *(f"{st}@{p}" for st in ("labels_transfer", "render", "evaluate_transfer") for p in PAIRS)},
    ),
    "render param": ({"render.crf": 30}, {"report", *(f"{st}@{p}" for st in ("render", "evaluate_transfer")
                                                       for p in PAIRS)}),
    "held-out only evaluate param": ({"evaluate.face": False}, {f"evaluate@{T}", "report"}),
    "one dancer's choice": (  # the jumper's entry now follows the woman in front: another dance
        {"subjects.jumper.person": "auto"},
        {"subject@jumper", "report", *(f"{st}@{T}-jumper" for st in ("labels_transfer", "render",
                                                                      "evaluate_transfer"))},
    ),
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
    generator = (work / "models" / T / "generator.pt").read_bytes()
    set_params(work, {"train.steps": 0})
    proc = dvc(work, "repro", check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stdout.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "'train.steps' = 0" in errors[0] and ">= 1" in errors[0], proc.stdout[-3000:]
    assert "Running stage 'train_face" not in proc.stdout
    # The stage wrote nothing (no temporary leftovers). DVC itself removed the stage's
    # old outputs before running it: cached ones come back from the DVC cache, the
    # git-tracked logs (cache: false) from git.
    assert not [p.name for p in (work / "models").iterdir() if ".tmp-" in p.name]
    (work / "params.yaml").write_text(params, encoding="utf-8")
    git(work, "checkout", "--", "dvclive")
    dvc(work, "checkout")
    clean, out = status_clean(work)
    assert clean, out
    assert (work / "models" / T / "generator.pt").read_bytes() == generator


def _exp_rows(show: Any) -> list[dict[str, Any]]:
    """Flatten ``dvc exp show --json`` (DVC 3) into baseline and experiment rows."""
    rows = []
    for baseline in show:
        rows.append(baseline)
        for exp in baseline.get("experiments") or []:
            rows.extend(exp.get("revs") or [])
    return rows


EVAL_JSON = f"metrics/eval/{T}/eval.json"
TRANSFER_JSON = f"metrics/eval/{T}/walker/transfer.json"


def _metrics(row: dict[str, Any], name: str = EVAL_JSON) -> dict[str, Any]:
    data = (row.get("data") or {}).get("metrics") or {}
    return (data.get(name) or {}).get("data") or {}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A metrics file as ``dvc metrics diff`` names its values: nested keys joined with dots."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


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
    assert f"Running stage 'render@{T}-walker'" in proc.stdout
    assert "Running stage 'train" not in proc.stdout
    show = json.loads(dvc(work, "exp", "show", "--json").stdout)
    rows = [r for r in _exp_rows(show) if r.get("rev") != "workspace"]
    baseline = next(r for r in rows if r.get("name") != "crf28" and _param(r, "render.crf") is not None)
    exp = next(r for r in rows if r.get("name") == "crf28")
    assert _param(baseline, "render.crf") != 28 and _param(exp, "render.crf") == 28
    base_m, exp_m = _metrics(baseline), _metrics(exp)
    assert base_m and exp_m, json.dumps(show)[:3000]
    # each row holds its own run's metrics: the baseline's are the committed file, the experiment's
    # the file its run left in the workspace
    committed = json.loads(git(work, "show", f"HEAD:{EVAL_JSON}").stdout)
    assert _same(base_m, committed), {k: (base_m.get(k), committed.get(k)) for k in {*base_m, *committed}
                                      if _plain(base_m.get(k)) != _plain(committed.get(k))}
    assert _same(exp_m, json.loads((work / EVAL_JSON).read_text(encoding="utf-8")))
    # render.crf changes the video, not the self-reenactment scored on generated held-out frames
    assert _same(exp_m, base_m)
    base_t, exp_t = _metrics(baseline, TRANSFER_JSON), _metrics(exp, TRANSFER_JSON)
    assert _same(base_t, json.loads(git(work, "show", f"HEAD:{TRANSFER_JSON}").stdout))
    assert _same(exp_t, json.loads((work / TRANSFER_JSON).read_text(encoding="utf-8")))
    assert exp_t["frames"] == base_t["frames"] > 0
    check_diffs_between(work, "HEAD", "crf28", {"render.crf": (_param(baseline, "render.crf"), 28)})


def check_diffs_between(work: Path, old_rev: str, new_rev: str, params: dict[str, tuple[Any, Any]]) -> None:
    """``dvc params diff`` lists exactly ``params`` (key → (old, new)); ``dvc metrics diff`` gives, for
    every metrics file dvc.yaml declares, the values of the two runs' files (``new_rev``'s results
    are in the workspace), and without ``--all`` exactly the keys whose values differ."""
    from dvc.repo import Repo

    diff = json.loads(dvc(work, "params", "diff", old_rev, new_rev, "--json").stdout)
    assert {k: (v["old"], v["new"]) for k, v in diff.get("params.yaml", {}).items()} == params
    assert set(diff) == {"params.yaml"}
    with Repo(str(work)) as repo:
        files = sorted(o.def_path for st in repo.index.stages for o in st.outs if o.metric)
    # eval.json, footage.json and 2 dvclive files per target, one transfer.json per pair
    assert EVAL_JSON in files and TRANSFER_JSON in files and len(files) == 4 + len(PAIRS)
    every = json.loads(dvc(work, "metrics", "diff", old_rev, new_rev, "--all", "--json").stdout)
    changed = json.loads(dvc(work, "metrics", "diff", old_rev, new_rev, "--json").stdout)
    assert set(every) == set(files)
    for f in files:
        old = _plain(_flat(json.loads(git(work, "show", f"{old_rev}:{f}").stdout)))
        new = _plain(_flat(json.loads((work / f).read_text(encoding="utf-8"))))
        assert _plain({k: v["old"] for k, v in every[f].items()}) == old, f
        assert _plain({k: v["new"] for k, v in every[f].items()}) == new, f
        differ = {k for k in {*old, *new} if old.get(k) != new.get(k)}
        assert set(changed.get(f, {})) == differ, f


def stages_running(project: Path, path: str) -> set[str]:
    """The code stage (its deps are the directories above every module) and every stage instance whose
    command's manifest, as the code stage wrote it, lists ``path``."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        manifests = {s.name: [d.def_path for d in s.deps if d.def_path.startswith("data/code/")]
                     for s in repo.index.stages if hasattr(s, "name")}  # not the inputs' .dvc files
    assert manifests.pop("code") == []
    return {"code"} | {name for name, paths in manifests.items()
                       if any(path in json.loads((project / m).read_text(encoding="utf-8"))["files"] for m in paths)}


@pytest.mark.slow
def test_editing_one_library_module_reruns_the_stages_whose_command_runs_it(project: Path, tmp_path: Path) -> None:
    """A code change reruns the code stage, which rewrites the manifests, and the stages whose command's
    manifest changed, those that run the module (docs/dvc.md), and nothing else: here the report module,
    which evaluate, evaluate_transfer and report import (render imports others of ``dancepipe/output``
    and does not run). Every stage downstream of those is among them, so the set does not depend on
    outputs changing. A module no stage runs reruns only the code stage."""
    work = clone_tree(project, tmp_path / "p")
    module = work / "dancepipe" / "output" / "report.py"
    module.write_text(module.read_text(encoding="utf-8") + "\n# an edit that changes no output\n", encoding="utf-8")
    expected = stages_running(work, "dancepipe/output/report.py")
    uses = {f"evaluate_transfer@{p}" for p in PAIRS} | {f"evaluate@{T}", "report", "code"}
    assert expected == uses
    result = repro(work)
    assert result.ran == expected, f"ran {sorted(result.ran)}, expected {sorted(expected)}"
    assert result.skipped == ALL_STAGES - expected
    # the bytecode Python wrote into dancepipe/ while the stages ran is not part of their deps (.dvcignore)
    again = repro(work)
    assert again.ran == set() and again.restored == set(), again.output[-3000:]
    unused = work / "dancepipe" / "output" / "strip.py"
    unused.write_text(unused.read_text(encoding="utf-8") + "\n# an edit to what no stage runs\n", encoding="utf-8")
    assert stages_running(work, "dancepipe/output/strip.py") == {"code"}
    result = repro(work)
    assert result.ran == {"code"} and result.skipped == ALL_STAGES - {"code"}, result.output[-3000:]
    clean, out = status_clean(work)
    assert clean, out


# --- many dances, many dancers: what a catalog change reruns ---------------------------------------------


def _catalog(project: Path) -> dict[str, Any]:
    import yaml

    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    return {k: params[k] for k in ("videos", "subjects", "targets", "sources")}


@pytest.mark.slow
def test_adding_a_dance_runs_only_its_own_stages(project: Path, tmp_path: Path) -> None:
    """A new video as a new source: its ingest, poses and subject, and its one pair's stages; the
    other videos' ingests (which depend only on their own files) and the training never run."""
    import shutil

    work = clone_tree(project, tmp_path / "p")
    shutil.copy2(work / "inputs" / "sports2d.mp4", work / "inputs" / "encore.mp4")
    dvc(work, "add", "inputs/encore.mp4")
    cat = _catalog(work)
    cat["videos"]["encore"] = "inputs/encore.mp4"
    cat["subjects"]["encore"] = {"video": "encore", "person": "auto"}
    cat["sources"].append("encore")
    set_catalog(work, **cat)
    before = file_digests([p for p, cached in tracked_outputs(work) if cached], work)
    result = repro(work)
    new = {"ingest@encore", "poses@encore", "subject@encore", "report",
           *(f"{st}@{T}-encore" for st in ("labels_transfer", "render", "evaluate_transfer"))}
    assert result.ran == new, f"ran {sorted(result.ran)}"
    assert result.skipped == ALL_STAGES - {"report"}
    clean, out = status_clean(work)
    assert clean, out
    after = file_digests([p for p, cached in tracked_outputs(work) if cached], work)
    assert {k: after[k] for k in before if not k.startswith("outputs/report")} == {
        k: v for k, v in before.items() if not k.startswith("outputs/report")}
    assert f"{T}/encore.mp4" in (work / "outputs" / "report.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_adding_a_dancer_trains_only_them_and_removing_a_dance_keeps_the_rest(project: Path, tmp_path: Path) -> None:
    work = clone_tree(project, tmp_path / "p")
    cat = _catalog(work)
    cat["targets"].append("walker")
    set_catalog(work, **cat)
    result = repro(work)
    new = {*(f"{st}@walker" for st in ("frames", "profile", "footage", "labels_train", "train", "train_face",
                                       "evaluate")),
           "report",
           *(f"{st}@walker-{s}" for st in ("labels_transfer", "render", "evaluate_transfer")
             for s in cat["sources"])}
    assert result.ran == new, f"ran {sorted(result.ran)}"
    assert not {r for r in result.ran if r.endswith(f"@{T}") or f"@{T}-" in r}
    assert (work / "models" / "walker" / "generator.pt").is_file()
    # Removing a source: the other pairs stay valid and cached; only the index is rewritten.
    commit_all(work, "two dancers")
    kept = file_digests([p for p, cached in tracked_outputs(work) if cached and "jumper" not in str(p)], work)
    cat["sources"].remove("jumper")
    set_catalog(work, **cat)
    result = repro(work)
    assert result.ran == {"report"}, f"ran {sorted(result.ran)}"
    clean, out = status_clean(work)
    assert clean, out
    index = (work / "outputs" / "report.html").read_text(encoding="utf-8")
    assert "jumper" not in index and f"{T}/walker.mp4" in index and "walker/walker.mp4" in index
    now = file_digests([p for p, cached in tracked_outputs(work) if cached and "jumper" not in str(p)], work)
    assert {k: now[k] for k in kept if "report.html" not in k} == {k: v for k, v in kept.items()
                                                                   if "report.html" not in k}
    check_prune_lock_drops_the_removed_dance(work, cat)


def _locked(project: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8"))["stages"]


def check_prune_lock_drops_the_removed_dance(work: Path, cat: dict[str, Any]) -> None:
    """DVC keeps the removed dance's entries in dvc.lock; ``make prune-lock`` drops them and only them,
    the pipeline stays up to date, and the dance comes back from the caches when it is listed again."""
    import subprocess
    import sys

    gone = {f"{st}@{t}-jumper" for st in ("labels_transfer", "render", "evaluate_transfer")
            for t in cat["targets"]}
    before = _locked(work)
    assert gone <= set(before)  # dvc repro did not remove them (DVC 3)
    subprocess.run([sys.executable, "-m", "tools.prune_lock"], cwd=work, check=True, capture_output=True,
                   env=env(work))
    after = _locked(work)
    assert set(after) == set(before) - gone
    assert all(after[name] == before[name] for name in after)
    clean, out = status_clean(work)
    assert clean, out
    assert repro(work).ran == set()
    # listed again: its rendered videos come back from the run cache, nothing is labelled or rendered again
    # (evaluate_transfer writes uncached metrics, which DVC's run cache does not keep, so it runs)
    cat["sources"].append("jumper")
    set_catalog(work, **cat)
    result = repro(work)
    assert {f"render@{t}-jumper" for t in cat["targets"]} <= result.restored, result.output[-3000:]
    assert result.ran <= {*(f"evaluate_transfer@{t}-jumper" for t in cat["targets"]), "report"}, result.ran
