import json

from emseg.cli.main import main
from emseg.networks.architectures import available


def test_models_lists_every_registered_name_with_counts(capsys) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["architectures"]
    assert [row["name"] for row in rows] == available()
    assert all(row["parameters"] > 10_000 and isinstance(row["defaults"], dict) for row in rows)


def test_models_table(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in available():
        assert name in out


def test_the_bundled_model_is_listed_with_its_cross_validated_scores_and_its_command(capsys) -> None:
    from emseg.sharing.bundled import BUNDLED_MODEL

    assert BUNDLED_MODEL.is_file(), "the package ships a model (python -m emseg.sharing.bundled makes it)"
    assert main(["models", "--json"]) == 0
    model = json.loads(capsys.readouterr().out)["bundled_model"]
    cells = model["cross_validated"]["cells"]["v_rand"]
    assert model["path"] == str(BUNDLED_MODEL) and 0.9 < cells["ci_low"] <= cells["mean"] <= cells["ci_high"] <= 1.0
    assert model["cross_validated"]["slices"] == 30 and "dvc repro final/dvc.yaml" in model["made_by"] and model["commit"]
    check = model["fp16_check"]
    assert check["max_abs_difference"] < 0.02 and check["pixels_changing_side"] < 1e-3  # fp16 weights keep the predictions
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "bundled model: ISBI 2012 best profile" in out
    assert f"cross-validated over 30 labelled slices (5 folds, 95% intervals): cells V_rand {cells['mean']:.4f} [{cells['ci_low']:.4f}," in out


def test_the_bundled_model_shows_its_pixel_size_and_cell_step(capsys) -> None:
    assert main(["models", "--json"]) == 0
    model = json.loads(capsys.readouterr().out)["bundled_model"]
    assert model["pixel_size_nm"] == [50.0, 4.0, 4.0]
    assert model["cells"] == model["chosen"]["cell_step"] and "cross-validation folds" in model["cells"]["chosen_on"]
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "trained at 4 x 4 nm pixels, 50 nm sections" in out and f"cells: {model['cells']['method']}" in out
