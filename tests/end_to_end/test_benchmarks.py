"""The benchmark scripts' --quick modes run and write sane JSON (not how fast anything is).

One ``benchmarks/run_all.py --quick --threads 1`` run (about 50 s on 2 busy cores) makes
every script's JSON; each test checks one of them.  ``bench_score`` needs the ISBI labels
and is left out (its test skipped) where ``../shared/isbi2012`` is absent.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ISBI_DIR, REPO_ROOT

pytestmark = pytest.mark.e2e

BENCH = REPO_ROOT / "benchmarks"
HAS_ISBI = (ISBI_DIR / "train-labels.tif").is_file()


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    only = "score,segment,predict,train,pipeline" if HAS_ISBI else "segment,predict,train,pipeline"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, str(BENCH / "run_all.py"), "--quick", "--threads", "1", "--only", only,
               "--out-dir", str(out), "--json", str(out / "all.json"), "--markdown", str(out / "table.md")]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"run_all failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return {
        "all": json.loads((out / "all.json").read_text()),
        "table": (out / "table.md").read_text(),
        **{name: json.loads((out / f"{name}.json").read_text()) for name in only.split(",")},
    }


def _check_figures(result: dict) -> None:
    assert result["figures"]
    for name, figure in result["figures"].items():
        assert _positive(figure["value"]) or "faults" in name, (name, figure)
        assert figure["value"] >= 0, (name, figure)
    assert result["command"].startswith("python benchmarks/bench_") and "--quick" in result["command"]


class TestQuickRuns:
    """The tests reading `quick_runs`: a class, so that pytest-xdist runs them on one worker (tests/conftest.py) and the runs once."""

    @pytest.mark.skipif(not HAS_ISBI, reason="ISBI data not beside the repository")
    def test_score_quick_writes_positive_times(self, quick_runs: dict) -> None:
        result = quick_runs["score"]
        assert result["benchmark"] == "score"
        assert _positive(result["stack"]["median_s"]) and _positive(result["big_slice"]["median_s"])
        assert result["stack"]["shape"] == "5x512x512"
        assert 0.0 <= result["stack"]["v_rand"] <= 1.0
        _check_figures(result)

    def test_predict_quick_writes_positive_rates_and_memory(self, quick_runs: dict) -> None:
        result = quick_runs["predict"]
        assert result["benchmark"] == "predict"
        measured = {(r["size"], r["mode"]) for r in result["results"]} | {(s["size"], s["mode"]) for s in result["skipped"]}
        assert measured == {(size, mode) for size in (256,) for mode in ("plain", "tta", "bare")}
        for r in result["results"]:
            assert _positive(r["mpix_per_s"]) and _positive(r["peak_rss_mib"]), r
        _check_figures(result)

    def test_train_quick_writes_rates_of_both_loops_and_their_ratio(self, quick_runs: dict) -> None:
        result = quick_runs["train"]
        assert result["benchmark"] == "train"
        repeats = result["config"]["repeats"]
        for key in ("real_patches_per_s", "real_logged_patches_per_s", "bare_patches_per_s", "ratio"):
            s = result[key]
            assert len(s["values"]) == repeats and all(_positive(v) for v in s["values"]), key
            assert s["min"] <= s["median"] <= s["max"], key
        assert result["config"]["patch_size"] == 64 and result["config"]["timed_steps"] > 0
        assert result["config"]["threads"] == 1
        _check_figures(result)

    def test_segment_quick_times_every_method(self, quick_runs: dict) -> None:
        result = quick_runs["segment"]
        assert result["benchmark"] == "segment" and set(result["results"]) == {"components", "watershed", "multicut", "gasp", "mws"}
        assert all(_positive(r["median_s"]) for r in result["results"].values())
        assert result["machine"]["cpu"]["model"]
        _check_figures(result)

    def test_pipeline_quick_times_the_repro_and_a_noop_repro(self, quick_runs: dict) -> None:
        result = quick_runs["pipeline"]
        assert result["benchmark"] == "pipeline"
        assert _positive(result["repro_s"])
        assert list(result["stages_s"]) == ["fetch", "convert", "split", "augment", "train", "evaluate"]
        assert all(_positive(v) for v in result["stages_s"].values())
        assert len(result["noop_s"]["values"]) == result["config"]["repeats"]
        assert all(_positive(v) for v in result["noop_s"]["values"])
        assert 0.0 <= result["v_rand"] <= 1.0
        _check_figures(result)

    def test_run_all_gathers_every_figure_into_one_json_and_table(self, quick_runs: dict) -> None:
        runs = quick_runs["all"]["runs"]
        assert quick_runs["all"]["machine"]["cpu_count"] >= 1
        table = quick_runs["table"]
        assert "| figure | value | command | machine |" in table
        for name, run in runs.items():
            assert "error" not in run and run["result"] == quick_runs[name] | {"command": run["command"]}
            for figure in run["result"]["figures"]:
                assert f"| {figure} |" in table
            assert f"`{run['command']}`" in table


@pytest.mark.skipif(not HAS_ISBI, reason="ISBI data not beside the repository")
def test_a_step_profile_of_a_lever_builds_and_counts_the_network_its_model_keys_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # profile_train_step.py takes bench_train.py's options: -M sets model keys as params.yaml's model block does
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_train

    from emseg.evaluation.flops import train_step_flops
    from emseg.networks.architectures import resolve_kwargs

    parser = bench_train.build_parser()
    args = parser.parse_args(["--quick", "-M", "auto_context=true", "-M", "unet={num_res_units: 1}"])
    _, model = bench_train.trainer_settings(args, 40, 8, 64)
    assert model.auto_context and model.overrides() == {"num_res_units": 1}
    counted = train_step_flops("unet", resolve_kwargs("unet", {"num_res_units": 1}), 8, 4, 64, auto_context=True)
    assert bench_train.count_patch_gflop(args, model, 64) == pytest.approx(counted / 1e9 / 4)
    # a bad key or value is one line, before anything runs
    for bad in ("unet={num_res_units:1}", "auto_context"):
        with pytest.raises(SystemExit, match=r"^-M") as stop:
            bench_train.trainer_settings(parser.parse_args(["--quick", "-M", bad]), 40, 8, 64)
        assert len(str(stop.value).splitlines()) == 1


def test_volume_quick_finds_the_block_path_equal_to_the_in_memory_one(tmp_path: Path) -> None:
    out = tmp_path / "volume.json"
    done = subprocess.run([sys.executable, str(BENCH / "bench_volume.py"), "all", "--quick", "--json", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["command"].startswith("python benchmarks/bench_volume.py") and "--quick" in result["command"]
    memory, *volumes = result["equivalence"]
    assert memory["path"] == "in memory (TIFF)" and _positive(memory["mpix_per_s"])
    for row in volumes:
        assert row["cells_equal"] and row["cell_counts_equal"] and row["max_abs_proba_diff"] <= 1e-5
        assert _positive(row["mpix_per_s"]) and _positive(row["client_rss_mib"])
    assert {row["workers"] for row in volumes} == {"in-process", 2}
    assert all(row["largest_child_rss_mib"] > 0 for row in volumes if row["workers"] == 2)
    assert _positive(result["scaling"][0]["mpix_per_s"])


def test_ddp_quick_measures_one_and_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "ddp.json"
    done = subprocess.run([sys.executable, str(BENCH / "bench_ddp.py"), "--quick", "--json", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["command"] == "python benchmarks/bench_ddp.py --quick --json " + str(out)
    one, two = result["runs"]
    assert (one["processes"], two["processes"]) == (1, 2) and one["scaling_efficiency"] == 1.0
    assert _positive(two["patches_per_s"]) and len(two["rank_patches_per_s"]) == 2 and all(map(_positive, two["rank_patches_per_s"]))


@pytest.mark.skipif(not HAS_ISBI, reason="ISBI data not beside the repository")
def test_window_quick_compares_a_larger_window_with_the_default(tmp_path: Path) -> None:
    out = tmp_path / "window.json"
    done = subprocess.run([sys.executable, str(BENCH / "bench_window.py"), "--quick", "--threads", "1", "--json", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    default, larger = json.loads(out.read_text())["results"]
    assert (default["window"], default["overlap"], default["tiles"]) == (256, 0.5, 9) and (larger["window"], larger["tiles"]) == (512, 1)
    assert default["max_abs_diff"] == 0.0 and 0.0 < larger["mean_abs_diff"] < 0.1  # the reference is itself; one window is not nine
    assert larger["gflop"] < default["gflop"] and all(_positive(row["gflop_per_s"]) for row in (default, larger))
    assert 0.9 < default["v_rand_at_val_threshold"] <= 1.0 and 0.9 < larger["v_rand_at_val_threshold"] <= 1.0


def test_confidence_check_scores_merges_and_ranks_low_confidence_first() -> None:
    sys.path.insert(0, str(BENCH))
    import bench_confidence

    from emseg.config.layout import CELL_VALUE

    label = np.zeros((8, 9), np.uint8)
    label[:, :4] = label[:, 5:] = CELL_VALUE  # two cells, a membrane column between them
    merged = np.ones((8, 9), np.uint32)  # one cell over both: half of the union at best
    split = np.zeros((8, 9), np.uint32)
    split[:, :4], split[:, 5:] = 1, 2
    assert bench_confidence.cell_iou(merged, label) == pytest.approx([0.5])
    assert bench_confidence.cell_iou(split, label) == pytest.approx([1.0, 1.0])
    wrong = np.array([True, False, False, True])
    assert bench_confidence.auroc(np.array([0.1, 0.9, 0.8, 0.2]), wrong) == 1.0
    assert bench_confidence.auroc(np.array([0.9, 0.1, 0.2, 0.8]), wrong) == 0.0


def _one_fold(root: Path, context: int) -> None:
    """A cross-validation folder of one fold (a tiny untrained model, 5 synthetic labelled slices) and its PNG data set."""
    from emseg.config.layout import png_folder, slice_name
    from emseg.io.images import write_png

    from conftest import synthetic_stack, tiny_model_file

    images, labels = synthetic_stack(5, 40, 40, seed=6)
    for i, (image, label) in enumerate(zip(images, labels)):
        write_png(png_folder(root / "png", "train_images") / slice_name(i), image)
        write_png(png_folder(root / "png", "train_labels") / slice_name(i), label)
    fold = root / "cv" / "folds" / "0"
    tiny_model_file(fold / "model.pt", 32, context=context)
    (fold / "split.json").write_text(json.dumps({"train": [0, 1], "val": [2], "test": [3, 4]}))
    (fold / "segment.json").write_text(json.dumps({"method": "components", "settings": {"threshold": 0.5}}))


def test_confidence_check_runs_on_a_fold_and_compares_statistics_on_its_validation_slices(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    import bench_confidence

    _one_fold(tmp_path, context=0)
    common = ["--cv", str(tmp_path / "cv"), "--png", str(tmp_path / "png")]
    assert bench_confidence.main([*common, "--json", str(tmp_path / "check.json")]) == 0
    check = json.loads((tmp_path / "check.json").read_text())
    assert check["folds"] == [0] and check["slices"] == 2 and -1.0 <= check["spearman_confidence_iou"] <= 1.0
    assert bench_confidence.main([*common, "--choose", "--json", str(tmp_path / "choice.json")]) == 0
    choice = json.loads((tmp_path / "choice.json").read_text())["validation"]
    assert set(choice) == set(bench_confidence.STATISTICS) and len({row["cells"] for row in choice.values()}) == 1


def test_lone_slice_check_scores_a_context_model_with_its_sections_and_alone(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    import bench_lone_slice

    _one_fold(tmp_path, context=1)
    out = tmp_path / "lone.json"
    assert bench_lone_slice.main(["--cv", str(tmp_path / "cv"), "--png", str(tmp_path / "png"), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["slices"] == 2 and report["per_slice"]["ids"] == [3, 4]
    assert report["v_rand_alone"] - report["v_rand_with_sections"] == pytest.approx(report["difference"])



def _finished_run(run: Path, params: str) -> Path:
    """A one-fold cross-validation clone at `run`: its fold model and split, the slices in data/png, `params` as its params.yaml."""
    _one_fold(run, context=0)
    (run / "data").mkdir()
    (run / "png").rename(run / "data" / "png")
    (run / "params.yaml").write_text(params)
    return run


#: the params of those runs: no TTA, and one components threshold to choose
ONE_THRESHOLD = "evaluate: {tta: false}\nsegment: {method: components, components: {threshold: [0.5]}}\n"


def test_an_ensemble_of_a_model_with_itself_is_that_model_and_lands_as_a_fold(tmp_path: Path) -> None:
    import torch

    sys.path.insert(0, str(BENCH))
    import ensemble_cv

    from emseg.errors import EmsegError
    from emseg.networks.model_file import load_model

    runs = [_finished_run(tmp_path / name, ONE_THRESHOLD) for name in "ab"]  # two clones of one cross-validation: the same fold model
    net, _ = load_model(runs[0] / "cv" / "folds" / "0" / "model.pt")
    x = torch.randn(1, 1, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(ensemble_cv.ProbabilityMean([net, net])(x), net(x), atol=1e-4, rtol=1e-4)
    out = tmp_path / "ensemble"
    assert ensemble_cv.main(["--runs", *map(str, runs), "--out", str(out), "--folds", "0"]) == 0
    rows = json.loads((out / "folds" / "0" / "plots" / "per_slice.json").read_text())
    assert [row["slice"] for row in rows] == [3, 4] and json.loads((out / "ensemble.json").read_text())["runs"] == list(map(str, runs))
    (runs[1] / "cv" / "folds" / "0" / "split.json").write_text(json.dumps({"train": [0], "val": [1, 2], "test": [3, 4]}))
    with pytest.raises(EmsegError, match="fold 0: the runs' splits differ"):
        ensemble_cv.main(["--runs", *map(str, runs), "--out", str(tmp_path / "other"), "--folds", "0"])


def test_another_cell_grid_re_chooses_on_the_validation_slices_of_a_finished_fold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(BENCH))
    import cell_grid_cv

    from emseg.errors import EmsegError
    from emseg.inference.predictor import Predictor

    run = _finished_run(tmp_path / "run", ONE_THRESHOLD)
    out = tmp_path / "grid"
    assert cell_grid_cv.main(["--run", str(run), "--out", str(out), "--folds", "0", "-S", "segment.components.threshold=[0.3,0.6]"]) == 0
    tried = json.loads((out / "folds" / "0" / "segment.json").read_text())["tried"]
    assert sorted(t["settings"]["threshold"] for t in tried) == [0.3, 0.6]  # the overridden grid, chosen on the validation slices
    rows = json.loads((out / "folds" / "0" / "plots" / "per_slice.json").read_text())
    assert [row["slice"] for row in rows] == [3, 4] and json.loads((out / "cell_grid.json").read_text())["overrides"] == [
        "segment.components.threshold=[0.3,0.6]"]
    # a larger window: the same grid, the whole 40 px slice in one window (the tiny model trained on 32 px patches)
    windows = []
    window_args = Predictor._window_args
    monkeypatch.setattr(Predictor, "_window_args", lambda self: windows.append(self.window) or window_args(self))
    assert cell_grid_cv.main(["--run", str(run), "--out", str(tmp_path / "window"), "--folds", "0", "--tile", "48"]) == 0
    assert windows and set(windows) == {48} and json.loads((tmp_path / "window" / "cell_grid.json").read_text())["tile"] == 48
    for bad, line in ((["-S", "train.steps=3"], "only segment keys"), ([], "give a segment.KEY=VALUE or a window")):
        with pytest.raises(EmsegError, match=line):
            cell_grid_cv.main(["--run", str(run), "--out", str(tmp_path / "bad"), "--folds", "0", *bad])


def test_learned_edges_choose_on_validation_and_score_the_test_slices_of_a_fold(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    import learned_edges_cv

    from emseg.errors import EmsegError

    run = _finished_run(tmp_path / "run", "evaluate: {tta: false}\n")
    fold = run / "cv" / "folds" / "0"
    gasp = {"method": "gasp", "settings": {"beta": 0.5, "linkage": "average", "threshold": 0.3, "sigma_seeds": 1.0, "min_size": 5}}
    (fold / "segment.json").write_text(json.dumps(gasp))
    out = tmp_path / "learned"
    assert learned_edges_cv.main(["--run", str(run), "--out", str(out), "--folds", "0", "--with-training"]) == 0
    rows = json.loads((out / "folds" / "0" / "plots" / "per_slice.json").read_text())
    assert [row["slice"] for row in rows] == [3, 4] and all(0.0 <= row["segment_v_rand"] <= 1.0 for row in rows)
    choice = json.loads((out / "folds" / "0" / "learned.json").read_text())["choice"]
    assert choice["agglomeration"] in learned_edges_cv.AGGLOMERATIONS and choice["beta"] in learned_edges_cv.BETAS
    assert len(choice["tried"]) == len(learned_edges_cv.AGGLOMERATIONS) * len(learned_edges_cv.BETAS)
    (fold / "segment.json").write_text(json.dumps({"method": "components", "settings": {"threshold": 0.5}}))
    with pytest.raises(EmsegError, match="segment.json: the fold's cell step is 'components'"):
        learned_edges_cv.main(["--run", str(run), "--out", str(out), "--folds", "0"])
