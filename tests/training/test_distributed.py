"""DDP training under torchrun: gloo on CPU with 2 processes, on tiny synthetic slices."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from emseg.config.params import TrainParams
from emseg.errors import EmsegError
from emseg.training import distributed
from emseg.training.distributed import ProcessGroup, check_processes, describe_failure, join, needs_launch, rank_seed

from conftest import REPO_ROOT, TINY_PROFILE, copy_checkout, merge, run

# a training run of a few hundred steps on 48x48 synthetic slices, one rank of a job under torchrun
SCRIPT = """
import json, pathlib, sys
sys.path.insert(0, {tests!r})
from conftest import synthetic_stack
from emseg.config.params import ModelParams, TrainParams
from emseg.training.run import train
from emseg.training.sampler import TrainingData

images, labels = synthetic_stack(4, 48, 48)
data = TrainingData(list(images[:3]), list(labels[:3]), [images[3]], [labels[3]])
model = ModelParams(arch="unet", unet={{"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}})
params = TrainParams(steps={steps}, batch_size=4, patch_size=32, val_every=60, log_every=10, checkpoint_every=10, ema_decay=0.99,
                     processes=int(sys.argv[2]))
out = sys.argv[1]
result = train(data, model, params, 11, out + "/model.pt", out + "/live", out + "/checkpoints")
pathlib.Path(out, "result_rank{{}}.json".format(result["rank"])).write_text(json.dumps(result))
"""


def _torchrun(script: Path, out: Path, processes: int) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", str(script), str(out), str(processes)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _losses(live: Path) -> np.ndarray:
    rows = (live / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()[1:]
    return np.array([float(row.split("\t")[1]) for row in rows])


def test_two_processes_follow_the_loss_curve_of_one_with_the_same_global_batch(tmp_path: Path) -> None:
    """Not bit-equal, by design: the two ranks sample their own patch streams (rank 1's differs from the
    single process's), the gradients are averaged in another order, and each rank computes on one
    thread. Each 10-step window's mean loss stays within 5% of the single process's."""
    script = tmp_path / "train_tiny.py"
    script.write_text(SCRIPT.format(tests=str(REPO_ROOT / "tests"), steps=120))
    single, double = _torchrun(script, tmp_path / "one", 1), _torchrun(script, tmp_path / "two", 2)
    assert single.returncode == 0, single.stderr
    assert double.returncode == 0, double.stderr
    one, two = _losses(tmp_path / "one" / "live"), _losses(tmp_path / "two" / "live")
    assert len(one) == len(two) == 12
    assert np.max(np.abs(two - one) / one) < 0.05, (one, two)
    assert not np.array_equal(one, two)  # the second rank's patches are its own
    # one file per rank: the ranks share torchrun's stdout, where their lines can interleave
    ranks = [json.loads(path.read_text()) for path in sorted((tmp_path / "two").glob("result_rank*.json"))]
    assert sorted((r["rank"], r["processes"]) for r in ranks) == [(0, 2), (1, 2)]
    metrics = tmp_path / "two" / "live" / "plots" / "metrics"
    for rank in (0, 1):
        assert (metrics / "train" / f"rank{rank}" / "patches_per_s.tsv").is_file()
    assert yaml.safe_load((tmp_path / "two" / "live" / "params.yaml").read_text())["processes"] == 2
    assert (tmp_path / "two" / "model.pt").is_file() and not (tmp_path / "one" / "live" / "plots" / "metrics" / "train" / "rank0").exists()


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun worker ``rank`` among ``parent``'s descendants (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    todo = list(children.get(parent, []))
    while todo:
        pid = todo.pop()
        try:
            environ = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"LOCAL_RANK=" + str(rank).encode() in environ:
            return pid
        todo.extend(children.get(pid, []))
    return None


@pytest.mark.e2e
def test_dvc_repro_on_two_processes_then_a_killed_rank_and_a_resume(tmp_path: Path, isbi_like_source: Path) -> None:
    """The train stage under `dvc repro` with train.processes 2; SIGKILL of rank 1 stops the run with one
    line; `dvc repro` again resumes from the checkpoint and completes."""
    profile = merge(TINY_PROFILE, {"data": {"source": str(isbi_like_source)}, "train": {"processes": 2}})
    repo = copy_checkout(tmp_path / "repo", profile)
    out = run(["dvc", "repro"], repo).stdout
    assert "on 2 processes (cpu)" in out
    assert run(["dvc", "status", "dvc.yaml"], repo).stdout.strip().endswith("Data and pipelines are up to date.")
    assert yaml.safe_load((repo / "dvclive" / "params.yaml").read_text())["processes"] == 2
    assert (repo / "dvclive" / "plots" / "metrics" / "train" / "rank1" / "patches_per_s.tsv").is_file()

    params = yaml.safe_load((repo / "params.yaml").read_text())
    # long enough that rank 1 is killed mid-run (the first checkpoint comes at step 10), short enough that the resume is cheap
    params["train"].update({"steps": 400, "val_every": 200, "log_every": 10, "checkpoint_every": 10})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    killed = subprocess.Popen(["dvc", "repro", "train"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoints = repo / "models" / "checkpoints"
    deadline = time.monotonic() + 300
    while not any(checkpoints.glob("*.pt")) and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.05)
    rank1 = _rank_pid(killed.pid, 1)
    assert rank1 is not None, "rank 1 not found"
    os.kill(rank1, signal.SIGKILL)
    stdout, stderr = killed.communicate(timeout=300)
    assert killed.returncode != 0
    stage_errors = [line for line in stderr.splitlines() if line.startswith("stages/train.py: error:")]
    assert stage_errors == ["stages/train.py: error: train: rank 1 of 2 processes was killed by SIGKILL; "
                            "torchrun stopped the others. Run it again to resume from the last checkpoint"], stderr
    assert "Traceback" not in stderr and "terminated" not in stderr and "SIGTERM" not in stderr
    assert any(checkpoints.glob("*.pt"))

    resumed = run(["dvc", "repro", "train"], repo).stdout
    assert "resuming training from step" in resumed and "on 2 processes (cpu)" in resumed
    assert not any(checkpoints.glob("*.pt"))


def test_rank_zero_keeps_the_single_process_stream_and_the_others_get_their_own() -> None:
    assert rank_seed(42, 0) == 42
    assert len({rank_seed(42, rank) for rank in range(8)}) == 8
    assert rank_seed(42, 1) == rank_seed(42, 1) != rank_seed(43, 1)


def test_a_single_process_needs_no_launch_and_a_torchrun_worker_launches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in distributed.TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    assert not needs_launch(1) and needs_launch(2)
    assert join(TrainParams()) == ProcessGroup()
    for name, value in zip(distributed.TORCHRUN_ENV, ("0", "2", "0", "2")):
        monkeypatch.setenv(name, value)
    assert not needs_launch(2)


def test_torchrun_with_another_process_count_than_params_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in zip(distributed.TORCHRUN_ENV, ("0", "4", "0", "4")):
        monkeypatch.setenv(name, value)
    with pytest.raises(EmsegError, match=r"^params train.processes: 2, but torchrun started 4 processes on this node"):
        join(TrainParams(processes=2))


def test_more_cuda_processes_than_gpus_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "select_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(EmsegError, match=r"^params train.processes: 2 processes on CUDA need as many GPUs, this machine has 1$"):
        check_processes(TrainParams(processes=2, device="cuda"))


def test_a_multi_node_world_must_split_the_global_batch() -> None:
    with pytest.raises(EmsegError, match=r"train.batch_size: 4 patches cannot be split evenly over 6 processes"):
        check_processes(TrainParams(processes=2, device="cpu"), world_size=6)


class _Failure:
    def __init__(self, exitcode: int) -> None:
        self.exitcode = exitcode


@pytest.mark.parametrize(
    ("failures", "says"),
    [
        ({1: _Failure(-signal.SIGKILL)}, "rank 1 of 2 processes was killed by SIGKILL"),
        ({0: _Failure(128 + signal.SIGTERM), 1: _Failure(-signal.SIGKILL)}, "rank 1 of 2 processes was killed by SIGKILL"),
        ({0: _Failure(distributed.PEER_LOST_STATUS), 1: _Failure(-signal.SIGKILL)}, "rank 1 of 2 processes was killed by SIGKILL"),
        ({0: _Failure(-signal.SIGTERM), 1: _Failure(-signal.SIGTERM)}, "rank 0 of 2 processes was killed by SIGTERM"),
        ({0: _Failure(2)}, "rank 0 of 2 processes exited with status 2"),
    ],
)
def test_a_failed_worker_is_named_in_one_line(failures: dict, says: str) -> None:
    line = describe_failure(failures, 2)
    assert says in line and "\n" not in line and "resume" in line
