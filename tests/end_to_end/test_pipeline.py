"""The real `dvc repro` / `dvc exp` CLI on a tiny profile, in a temporary copy of the repository."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import run

pytestmark = pytest.mark.e2e


def _run(args: list[str], cwd: Path) -> str:
    return run(args, cwd).stdout


def test_dvc_repro_then_noop_then_only_train_and_evaluate(tiny_repo: Path) -> None:
    _run(["dvc", "repro"], tiny_repo)
    metrics = json.loads((tiny_repo / "metrics" / "evaluate.json").read_text())
    for key in ("v_rand", "v_info", "pixel_error", "pixel_error_plain", "dice", "iou", "threshold"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert (tiny_repo / "models" / "model.pt").is_file()
    assert (tiny_repo / "data" / "eval" / "test-volume-proba.tif").is_file()
    assert list((tiny_repo / "metrics" / "plots" / "overlays").glob("*.png"))

    second = _run(["dvc", "repro"], tiny_repo)
    assert "Running stage" not in second

    # the report opens offline: every plot of the main pipeline draws, Vega inlined (.dvc/config)
    _run(["dvc", "plots", "show"], tiny_repo)
    drawn = _drawn_plots(tiny_repo / "dvc_plots" / "index.html", tiny_repo / ".chromium")
    main = {name: ok for name, ok in drawn.items() if name not in CV_PLOTS}  # the CV plots have no data here
    assert set(MAIN_PLOTS) <= set(main) and sum(name.startswith(DVCLIVE_PLOT) for name in main) >= 5, drawn
    assert all(main.values()), drawn

    # same params and seed on CPU: a forced rebuild of everything gives byte-identical metrics
    before = (tiny_repo / "metrics" / "evaluate.json").read_bytes()
    forced = _run(["dvc", "repro", "--force"], tiny_repo)
    assert "Running stage 'train'" in forced
    assert (tiny_repo / "metrics" / "evaluate.json").read_bytes() == before

    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    params["train"]["lr"] = 0.002
    (tiny_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = _run(["dvc", "repro"], tiny_repo)
    ran = sorted(line.split("'")[1] for line in third.splitlines() if line.startswith("Running stage"))
    assert ran == ["evaluate", "train"]

    shown = _run(["dvc", "metrics", "show", "--json"], tiny_repo)
    assert "v_rand" in shown


def _experiments(repo: Path) -> dict[str, dict]:
    table = json.loads(_run(["dvc", "exp", "show", "--json"], repo))
    found = {}
    for rev in table:
        for exp in rev.get("experiments") or []:
            data = exp["revs"][0].get("data") or {}
            found[exp.get("name")] = data
    return found


def _wait_for_queue(repo: Path, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _run(["dvc", "queue", "status"], repo)
        if not any(word in status for word in ("Queued", "Running")):
            return
        time.sleep(2)
    raise AssertionError(f"dvc queue did not finish in {timeout_s} s:\n{status}")


def test_architecture_sweep_through_the_dvc_queue_shows_in_exp_show(tiny_repo: Path) -> None:
    _run(["dvc", "repro"], tiny_repo)
    _run(["git", "add", "-A"], tiny_repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], tiny_repo)
    _run(["dvc", "exp", "run", "--queue", "-S", "model.arch=unet,attention_unet"], tiny_repo)
    _run(["dvc", "queue", "start", "-j", "1"], tiny_repo)
    _wait_for_queue(tiny_repo)
    failed = _run(["dvc", "queue", "status"], tiny_repo)
    assert "Failed" not in failed, failed
    experiments = _experiments(tiny_repo)
    arches = sorted(data["params"]["params.yaml"]["data"]["model"]["arch"] for data in experiments.values())
    assert arches == ["attention_unet", "unet"]
    for data in experiments.values():
        metrics = data["metrics"]["metrics/evaluate.json"]["data"]
        assert 0.0 <= metrics["v_rand"] <= 1.0
        assert "best_val/v_rand" in data["metrics"]["dvclive/metrics.json"]["data"]
    # the README's comparison table comes from these experiments
    table = _run([sys.executable, "benchmarks/arch_table.py", "--prefix", "", "--no-speed"], tiny_repo)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert sorted(row.split(" | ")[0].strip("| ") for row in rows) == ["attention_unet", "unet"]


def test_cross_validation_pipeline_and_a_cross_validated_experiment(tiny_repo: Path) -> None:
    """`dvc repro cv/dvc.yaml` on the tiny profile's 2 folds, then `dvc exp run cv/dvc.yaml -S ...` and `emseg compare`."""
    out = _run(["dvc", "repro", "cv/dvc.yaml"], tiny_repo)
    assert "Running stage 'cv/dvc.yaml:train@1'" in out and "Running stage 'train'" not in out  # the main pipeline's own stages stay
    metrics = json.loads((tiny_repo / "cv" / "metrics.json").read_text())
    assert metrics["slices"] == 8 and metrics["folds"] == 2
    v_rand = metrics["validated"]["v_rand"]
    assert 0.0 <= v_rand["ci_low"] <= v_rand["mean"] <= v_rand["ci_high"] <= 1.0 and set(v_rand["per_fold"]) == {"0", "1"}
    rows = json.loads((tiny_repo / "cv" / "per_slice.json").read_text())
    assert [row["slice"] for row in rows] == list(range(8)) and {row["fold"] for row in rows} == {0, 1}
    for fold in (0, 1):
        assert not (tiny_repo / "cv" / "folds" / str(fold) / "eval" / "test-volume-proba.tif").exists()  # labelled test block only

    # the final model: the recipe on all 8 slices, with the cell step and threshold the 2 folds' validation blocks chose together
    final_out = _run(["dvc", "repro", "final/dvc.yaml"], tiny_repo)
    assert "Running stage 'cv/dvc.yaml:train@0'" not in final_out and "no validation slices: the model of the last step" in final_out
    split = json.loads((tiny_repo / "final" / "split.json").read_text())
    assert split["train"] == list(range(8)) and split["val"] == split["test"] == []
    final = json.loads((tiny_repo / "final" / "metrics.json").read_text())
    chosen = [json.loads((tiny_repo / "cv" / "folds" / str(fold) / "segment.json").read_text()) for fold in (0, 1)]
    at_pooled = [next(t["v_rand"] for t in c["tried"] if t["settings"] == final["cell_step"]["settings"]) for c in chosen]
    assert final["cell_step"]["v_rand"] == sum(at_pooled) / 2 and final["cell_step"]["per_fold"] == {"0": at_pooled[0], "1": at_pooled[1]}
    means = {}
    for c in chosen:
        for t in c["tried"]:
            means.setdefault(json.dumps(t["settings"], sort_keys=True), []).append(t["v_rand"])
    assert final["cell_step"]["v_rand"] == max(sum(v) / 2 for v in means.values())  # the best mean over both folds
    from emseg.networks.model_file import load_model

    from conftest import TINY_PROFILE

    _, config = load_model(tiny_repo / "final" / "model.pt")
    assert config.cells["settings"] == final["cell_step"]["settings"] and config.val_threshold == final["val_threshold"]
    assert config.info["cross_validated"]["cells"] == metrics["segmented"] and config.info["steps"] == TINY_PROFILE["train"]["steps"]
    tables = [(tiny_repo / "cv" / "folds" / str(fold) / "dvclive/plots/metrics/val/v_rand.tsv").read_text().split()[2:] for fold in (0, 1)]
    by_step = {int(step): (float(a) + float(b)) / 2 for step, a, b in zip(tables[0][::2], tables[0][1::2], tables[1][1::2])}
    assert config.info["step"] == final["step"]["step"] == max(sorted(by_step), key=by_step.get)  # the folds' best mean step

    _run(["git", "add", "-A"], tiny_repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "cv baseline"], tiny_repo)
    ran = _run(["dvc", "exp", "run", "cv/dvc.yaml", "-n", "cv-bce", "-S", "train.loss=bce"], tiny_repo)
    assert "Running stage 'cv/dvc.yaml:split@0'" not in ran and "Running stage 'cv/dvc.yaml:train@0'" in ran  # splits reused
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], tiny_repo))
    experiment = next(exp for rev in shown for exp in rev.get("experiments") or [] if exp.get("name") == "cv-bce")
    data = experiment["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["loss"] == "bce"
    assert "validated" in data["metrics"]["cv/metrics.json"]["data"]
    compared = _run([str(Path(sys.executable).parent / "emseg"), "compare", "HEAD", "cv-bce"], tiny_repo)
    assert "v_rand_at_val_threshold" in compared and "B is " in compared

    # the cross-validation plots draw offline too (the main pipeline's have no data in this repo)
    _run(["dvc", "plots", "show"], tiny_repo)
    drawn = _drawn_plots(tiny_repo / "dvc_plots" / "index.html", tiny_repo / ".chromium")
    assert {name: drawn.get(name) for name in CV_PLOTS} == {name: True for name in CV_PLOTS}, drawn


#: the plot ids DVC gives the plots of dvc.yaml and cv/dvc.yaml in its HTML page
MAIN_PLOTS = ("Test_slices__per_slice", "Test_scores_by_threshold", "Membrane_precision-recall")
#: dvclive's curves: one plot per logged series (train loss, learning rate, each validation score)
DVCLIVE_PLOT = "dvclive_plots_metrics_"
CV_PLOTS = ("Cross-validation__per_slice__validated_threshold_", "Cross-validation__per_slice__at_the_challenge_threshold_")


def _drawn_plots(html: Path, profile: Path) -> dict[str, bool]:
    """Each Vega plot of the page by id, and whether it drew marks in headless Chromium with no network."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium here (.ci/run installs Debian's chromium)")
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", html.as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=180).stdout
    declared = re.findall(r"vegaEmbed\('#([^']+)'", html.read_text())
    drawn = {}
    for name in declared:
        # vega-embed puts a canvas of the plot's size into the plot's div; an empty plot gets a 0 x 0 one
        block = re.search(rf'<div id="{re.escape(name)}".*?<canvas width="(\d+)"', dom, re.S)
        drawn[name] = bool(block and int(block.group(1)) > 0)
    return drawn


def test_affinity_model_through_dvc_repro_then_emseg_predict(tiny_repo: Path, tmp_path: Path) -> None:
    """model.target=affinities with segment.method=mws, 2.5-D context and a consistency loss runs the real stages and `emseg predict`."""
    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    params["model"]["target"] = "affinities"
    params["model"]["offsets"] = [[-1, 0], [0, -1], [-4, 0], [0, -4]]
    params["segment"]["method"] = "mws"
    params["model"]["context"] = 1  # each slice with one section on each side: augmented, trained and predicted with them
    params["train"]["consistency_weight"] = 0.5  # and the unlabelled slices, with their own sections, in a consistency loss
    (tiny_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _run(["dvc", "repro"], tiny_repo)
    unlabelled = len(list((tiny_repo / "data" / "png" / "test" / "images").glob("*.png")))
    assert f"train: a consistency loss on {unlabelled} unlabelled slices, weight 0.5" in out

    from emseg.networks.model_file import load_model

    _, config = load_model(tiny_repo / "models" / "model.pt")
    assert config.target == "affinities" and config.offsets == params["model"]["offsets"] and config.context == 1
    assert len(list((tiny_repo / "data" / "augmented" / "context").glob("*_z-1.png"))) == len(list((tiny_repo / "data" / "augmented" / "images").glob("*.png")))
    assert config.pixel_size == [50.0, 4.0, 4.0] and config.cell_step()[0] == "mws"  # the model file carries its scale and cell step
    metrics = json.loads((tiny_repo / "metrics" / "evaluate.json").read_text())
    assert metrics["segment_method"] == "mws" and 0.0 <= metrics["segment_v_rand"] <= 1.0
    tuned = json.loads((tiny_repo / "models" / "segment.json").read_text())
    assert tuned["method"] == "mws"

    cells = tmp_path / "cells"
    emseg = str(Path(sys.executable).parent / "emseg")
    alone = tmp_path / "copied" / "model.pt"  # copied away from segment.json: the model file alone says how to draw cells
    alone.parent.mkdir()
    alone.write_bytes((tiny_repo / "models" / "model.pt").read_bytes())
    done = run([emseg, "predict", str(tiny_repo / "data" / "png" / "test" / "images"), "--model", str(alone),
                "--out", str(cells), "--threads", "1"], tiny_repo)
    out = done.stdout
    images = sorted(path.stem for path in (tiny_repo / "data" / "png" / "test" / "images").glob("*.png"))
    assert "cells: mws" in out, out  # the model file's cell step picks the method
    assert "a single slice is given as its own neighbours" in done.stderr  # each PNG of a folder is a lone slice
    assert sorted(path.name for path in cells.glob("*_cells.tif")) == [f"{stem}_cells.tif" for stem in images]


def test_a_labs_own_layout_fine_tuned_from_a_model_through_dvc_repro(tmp_path: Path) -> None:
    """Another lab's conventions (a folder of TIFF slices, 1-bit masks with True = membrane, no unlabelled slices,
    4.6 nm pixels) through the real pipeline, starting from a model's weights: the model file records it all."""
    import numpy as np
    from PIL import Image

    from emseg.config.params import parse_params
    from emseg.networks.model_file import load_model
    from emseg.training.fit import fit

    from conftest import TINY_PROFILE, copy_checkout, merge, synthetic_stack, tif

    images, labels = synthetic_stack(8, 64, 64, seed=11)
    source = tmp_path / "lab"
    (source / "membranes").mkdir(parents=True)
    for index, (image, label) in enumerate(zip(images, labels)):
        tif(source / "raw" / f"{index:02d}.tif", image)
        Image.fromarray(label == 0).save(source / "membranes" / f"{index:02d}.png")
    base = tmp_path / "base.pt"
    fit(list(images[:2]), list(labels[:2]), base, parse_params(TINY_PROFILE))
    overrides = {
        "data": {"source": str(source), "train_images": "raw", "train_labels": "membranes", "test_images": "", "pixel_size": [45.0, 4.6, 4.6]},
        "train": {"init_from": str(base), "finetune": {"steps": 2, "val_every": 2}},
    }
    repo = copy_checkout(tmp_path / "repo", merge(TINY_PROFILE, overrides))
    out = _run(["dvc", "repro"], repo)
    assert re.search(r"labels: 8 labelled slices of 64x64: membrane \d.*membrane value (1|255)\b", out), out  # True, the rarer value, is membrane
    _, config = load_model(repo / "models" / "model.pt")
    assert config.pixel_size == [45.0, 4.6, 4.6] and config.info["init_from"] == str(base) and config.info["steps"] == 2
    assert config.cells["chosen_on"].startswith("validation slices")
    assert not (repo / "data" / "eval" / "test-volume-proba.tif").exists() and np.isfinite(
        json.loads((repo / "metrics" / "evaluate.json").read_text())["v_rand"]
    )
