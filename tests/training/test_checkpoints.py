"""A training killed with SIGKILL and started again ends exactly where an uninterrupted one does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from conftest import REPO_ROOT

SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from conftest import synthetic_stack
from emseg.config.params import ModelParams, TrainParams
from emseg.training.run import train
from emseg.training.sampler import TrainingData

images, labels = synthetic_stack(4, 48, 48)
data = TrainingData(list(images[:3]), list(labels[:3]), [images[3]], [labels[3]])
model = ModelParams(arch="unet", unet={{"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}})
params = TrainParams(steps=300, batch_size=2, patch_size=32, val_every=60, log_every=10, checkpoint_every=10, ema_decay=0.99)
out = sys.argv[1]
result = train(data, model, params, 11, out + "/model.pt", out + "/live", out + "/checkpoints")
print(json.dumps(result["best_val"]))
"""


def _start(script: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    script = tmp_path / "train_tiny.py"
    script.write_text(SCRIPT.format(tests=str(REPO_ROOT / "tests")))

    reference = _start(script, tmp_path / "reference")
    ref_out, ref_err = reference.communicate(timeout=600)
    assert reference.returncode == 0, ref_err

    killed = _start(script, tmp_path / "resumed")
    checkpoints = tmp_path / "resumed" / "checkpoints"
    deadline = time.monotonic() + 300
    while not any(checkpoints.glob("*.pt")) and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.01)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert any(checkpoints.glob("*.pt")), "no checkpoint was written before the kill"

    resumed = _start(script, tmp_path / "resumed")
    res_out, res_err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, res_err
    assert "resuming training from step" in res_out
    assert json.loads(res_out.splitlines()[-1]) == json.loads(ref_out.splitlines()[-1])

    ref_state = torch.load(tmp_path / "reference" / "model.pt", weights_only=True)["state_dict"]
    res_state = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(ref_state[key], res_state[key]) for key in ref_state)
    # the logs of the resumed run hold each step once, with the reference's values
    for metric in ("train/loss", "val/v_rand", "val/loss"):
        ref_rows = (tmp_path / "reference" / "live" / "plots" / "metrics" / f"{metric}.tsv").read_text()
        res_rows = (tmp_path / "resumed" / "live" / "plots" / "metrics" / f"{metric}.tsv").read_text()
        assert res_rows == ref_rows, metric
    assert not any(checkpoints.glob("*.pt")), "a completed run removes its checkpoint"
