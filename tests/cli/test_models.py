import json

import pytest

from emseg.cli.main import main
from emseg.networks import available


def test_models_lists_every_registered_name_with_counts(capsys) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == available()
    assert all(row["parameters"] > 10_000 and isinstance(row["defaults"], dict) for row in rows)


def test_models_table(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in available():
        assert name in out
