"""Block-wise volume prediction: equal to the in-memory path, restartable, on Dask, with clear errors."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from emseg.cli.main import main
from emseg.errors import EmsegError
from emseg.inference.volume import omezarr
from emseg.inference.volume.blockwise import BLOCK_SIZE, VolumeRequest, plan_volume, predict_volume
from emseg.inference.volume.engine import InProcess, local_cluster
from emseg.inference.volume.sources import open_volume
from emseg.io.images import read_stack

from conftest import synthetic_stack, tif, tiny_model_file

PATCH = 32
SHAPE = (3, 70, 90)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("model") / "model.pt", PATCH)


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    return synthetic_stack(*SHAPE, seed=4, cells=15)[0]


def _ome(path: Path, stack: np.ndarray, version: str = "0.4") -> Path:
    omezarr.create_ome_zarr(path, stack.shape, stack.dtype, 32, (50.0, 4.0, 4.0), "nanometer", version=version)
    omezarr.open_level(path, 0)[:] = stack
    return path


@pytest.fixture(scope="module")
def in_memory(tmp_path_factory: pytest.TempPathFactory, model_path: Path, stack: np.ndarray) -> dict[str, np.ndarray]:
    """What the TIFF path writes for the same stack, read whole."""
    folder = tmp_path_factory.mktemp("in_memory")
    source = tif(folder / "vol.tif", stack)
    assert main(["predict", str(source), "--model", str(model_path), "--out", str(folder / "out"), "--quiet",
                 "--outputs", "proba,membrane,cells", "--threshold", "0.5"]) == 0
    return {kind: read_stack(folder / "out" / f"vol_{kind}.tif") for kind in ("proba", "membrane", "cells")}


def _level0(out: Path, stem: str, kind: str) -> np.ndarray:
    return np.asarray(omezarr.open_level(out / f"{stem}_{kind}.ome.zarr", 0, mode="r")[:])


def _same_cells(a: np.ndarray, b: np.ndarray) -> bool:
    """The same partition into cells (numbers may differ: the TIFF path numbers per slice)."""
    for z in range(a.shape[0]):
        pairs = np.unique(np.stack([a[z].ravel(), b[z].ravel()]), axis=1)
        cells = pairs[:, pairs[0] > 0]
        if not (((a[z] == 0) == (b[z] == 0)).all() and len(np.unique(cells[0])) == cells.shape[1] == len(np.unique(cells[1]))):
            return False
    return True


def _check_equal(out: Path, stem: str, in_memory: dict[str, np.ndarray]) -> None:
    np.testing.assert_allclose(_level0(out, stem, "proba"), in_memory["proba"], rtol=0, atol=1e-5)
    assert (_level0(out, stem, "membrane") == in_memory["membrane"]).mean() > 0.9999
    assert _same_cells(_level0(out, stem, "cells"), in_memory["cells"])


@pytest.mark.parametrize("block, version", [(32, "0.4"), (48, "0.5"), (BLOCK_SIZE, "0.4")])
def test_an_ome_zarr_volume_equals_the_in_memory_prediction(tmp_path, model_path, stack, in_memory, block, version) -> None:
    source = _ome(tmp_path / "vol.ome.zarr", stack, version)
    out = tmp_path / "out"
    rc = main(["predict", str(source), "--model", str(model_path), "--out", str(out), "--quiet", "--threshold", "0.5",
               "--block-size", str(block), "--ome-version", version])
    assert rc == 0
    _check_equal(out, "vol", in_memory)
    assert sorted(p.name for p in out.iterdir()) == ["vol_cells.ome.zarr", "vol_membrane.ome.zarr", "vol_proba.ome.zarr"]
    # the pixel size travels into the outputs, and ome-zarr's own reader opens them
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    for kind in ("proba", "cells"):
        node = next(iter(Reader(parse_url(str(out / f"vol_{kind}.ome.zarr")))()))
        assert node.data[0].shape == SHAPE
        opened = open_volume(str(out / f"vol_{kind}.ome.zarr"))
        assert opened.scale == (50.0, 4.0, 4.0) and opened.unit == "nanometer"


@pytest.mark.parametrize("block", [32, BLOCK_SIZE])
def test_a_model_of_context_reads_the_same_sections_block_by_block_as_in_memory(tmp_path, stack, block) -> None:
    context_model = tiny_model_file(tmp_path / "m" / "model.pt", PATCH, context=1)
    options = ["--model", str(context_model), "--quiet", "--outputs", "proba,membrane,cells", "--threshold", "0.5"]
    assert main(["predict", str(tif(tmp_path / "vol.tif", stack)), "--out", str(tmp_path / "flat"), *options]) == 0
    expected = {kind: read_stack(tmp_path / "flat" / f"vol_{kind}.tif") for kind in ("proba", "membrane", "cells")}
    source = _ome(tmp_path / "vol.ome.zarr", stack)
    assert main(["predict", str(source), "--out", str(tmp_path / "out"), "--block-size", str(block), *options]) == 0
    _check_equal(tmp_path / "out", "vol", expected)


def test_a_larger_tile_gives_the_in_memory_prediction_with_that_tile(tmp_path, model_path, stack) -> None:
    options = ["--model", str(model_path), "--quiet", "--outputs", "proba,membrane,cells", "--threshold", "0.5", "--tile", "48"]
    assert main(["predict", str(tif(tmp_path / "vol.tif", stack)), "--out", str(tmp_path / "flat"), *options]) == 0
    expected = {kind: read_stack(tmp_path / "flat" / f"vol_{kind}.tif") for kind in ("proba", "membrane", "cells")}
    source = _ome(tmp_path / "vol.ome.zarr", stack)
    assert main(["predict", str(source), "--out", str(tmp_path / "out"), "--block-size", "32", *options]) == 0
    _check_equal(tmp_path / "out", "vol", expected)


def test_a_model_whose_evaluate_chose_gasp_segments_a_volume_with_gasp_as_a_slice(tmp_path, model_path, stack) -> None:
    model = tmp_path / "models" / "model.pt"
    model.parent.mkdir()
    model.write_bytes(model_path.read_bytes())
    (model.parent / "segment.json").write_text('{"method": "gasp", "settings": {"beta": 0.5}}')
    options = ["--model", str(model), "--quiet", "--threshold", "0.5", "--outputs", "proba,membrane,cells"]
    assert main(["predict", str(tif(tmp_path / "vol.tif", stack)), "--out", str(tmp_path / "flat"), *options]) == 0
    expected = {kind: read_stack(tmp_path / "flat" / f"vol_{kind}.tif") for kind in ("proba", "membrane", "cells")}
    source = _ome(tmp_path / "vol.ome.zarr", stack)
    # blocks of 32 with the cells' halo of 128: each block draws its cells on the whole slice, so they are the slice's
    assert main(["predict", str(source), "--out", str(tmp_path / "out"), "--block-size", "32", *options]) == 0
    _check_equal(tmp_path / "out", "vol", expected)
    assert len(np.unique(expected["cells"][0])) > 3


def test_a_cell_method_a_volume_cannot_draw_is_refused_when_asked_and_gives_way_when_chosen(capsys) -> None:
    from emseg.cli.predict import volume_cell_step
    from emseg.inference.volume.blockwise import VolumeRequest

    with pytest.raises(EmsegError, match="mws reads the affinities"):
        VolumeRequest(("cells",), 0.5, 0.5, False, 4, "cpu", False, cells="mws")
    with pytest.raises(EmsegError, match="--cells gasp: colour not a setting of gasp"):
        VolumeRequest(("cells",), 0.5, 0.5, False, 4, "cpu", False, cells="gasp", cell_settings={"colour": 1})
    assert volume_cell_step("mws", {"stride": 2}, "settings from the model file", asked="mws") == ("mws", {"stride": 2})
    assert volume_cell_step("mws", {"stride": 2}, "settings from the model file", asked=None) == ("gasp", {})
    assert "segmented block-wise with gasp (its defaults); mws" in capsys.readouterr().err
    assert volume_cell_step("multicut", {"beta": 0.4}, "x", asked=None) == ("multicut", {"beta": 0.4})


def test_hdf5_and_lazy_tiff_inputs(tmp_path, model_path, stack, in_memory) -> None:
    with h5py.File(tmp_path / "vol.h5", "w") as handle:
        handle.create_dataset("em/raw", data=stack, chunks=(1, 32, 32))
    big_tiff = tif(tmp_path / "big.tif", stack)
    out = tmp_path / "out"
    rc = main(["predict", f"{tmp_path / 'vol.h5'}:/em/raw", str(big_tiff), "--model", str(model_path), "--out", str(out),
               "--quiet", "--threshold", "0.5", "--block-size", "32", "--workers", "1"])
    assert rc == 0
    _check_equal(out, "vol", in_memory)
    _check_equal(out, "big", in_memory)


def _job(tmp_path: Path, model_path: Path, stack: np.ndarray, block: int = 32):
    source = open_volume(str(_ome(tmp_path / "vol.ome.zarr", stack)))
    request = VolumeRequest(("proba", "membrane", "cells"), 0.5, 0.5, False, 4, "cpu", False, block)
    return plan_volume(source, model_path, request, tmp_path / "out")


def _outputs(finals: dict[str, Path]) -> dict[str, np.ndarray]:
    """Every level of every store."""
    return {
        f"{kind}/{level}": np.asarray(omezarr.open_level(path, level, mode="r")[:])
        for kind, path in finals.items()
        for level in range(omezarr.level_count(path))
    }


def test_an_interrupted_run_resumes_and_ends_with_the_same_output(tmp_path, model_path, stack) -> None:
    job, finals = _job(tmp_path / "a", model_path, stack)
    predict_volume(job, finals, InProcess())
    reference = _outputs(finals)

    job, finals = _job(tmp_path / "b", model_path, stack)
    seen = []

    def stop_after_two(name: str, done: int, total: int) -> None:
        seen.append(name)
        if name == "predict" and done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_volume(job, finals, InProcess(), progress=stop_after_two)
    assert not any(path.exists() for path in finals.values())  # nothing under a final name
    summary = predict_volume(job, finals, InProcess())
    assert summary.skipped == 2 and summary.blocks == 3 * 3 * 3
    result = _outputs(finals)
    assert all(np.array_equal(result[k], reference[k]) for k in reference)
    assert omezarr.get_attrs(finals["cells"])["complete"] is True


def test_a_restart_with_other_settings_is_refused(tmp_path, model_path, stack) -> None:
    job, finals = _job(tmp_path, model_path, stack)
    with pytest.raises(KeyboardInterrupt):
        predict_volume(job, finals, InProcess(), progress=lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    from dataclasses import replace

    from emseg.errors import EmsegError

    with pytest.raises(EmsegError, match="unfinished run with other"):
        predict_volume(replace(job, request=replace(job.request, threshold=0.3)), finals, InProcess())


@pytest.mark.e2e
def test_two_dask_workers_and_a_worker_killed_mid_run_give_the_same_output(tmp_path, model_path, stack) -> None:
    job, finals = _job(tmp_path / "ref", model_path, stack)
    predict_volume(job, finals, InProcess())
    reference = _outputs(finals)

    engine = local_cluster(2)
    try:
        pids = list(engine.client.run(os.getpid).values())
        killed = []

        def kill_one(name: str, done: int, total: int) -> None:
            if name == "predict" and not killed:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        job, finals = _job(tmp_path / "dask", model_path, stack)
        predict_volume(job, finals, engine, progress=kill_one)
        assert killed
    finally:
        engine.close()
    result = _outputs(finals)
    assert result.keys() == reference.keys()
    for key in reference:
        if key.startswith("proba"):  # a worker runs torch on 1 thread, this process on 2: float noise only
            np.testing.assert_allclose(result[key], reference[key], rtol=0, atol=1e-5)
        else:
            assert np.array_equal(result[key], reference[key]), key


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: (h5py.File(d / "x.h5", "w").create_dataset("raw", data=np.zeros((2, 8, 8), np.uint8)).file.close(), f"{d / 'x.h5'}:/nope")[1],
         "no dataset /nope"),
        (lambda d: str(d / "missing.ome.zarr"), "missing.ome.zarr"),
        (lambda d: (zarr.open_array(d / "c.zarr", mode="w", shape=(2, 3, 8, 8), dtype="u1"), str(d / "c.zarr"))[1], "c.zarr"),
    ],
    ids=["hdf5-missing-dataset", "missing-store", "channels"],
)
def test_bad_volume_inputs_fail_in_one_line_and_write_nothing(tmp_path, model_path, capsys, make, message) -> None:
    spec = make(tmp_path)
    out = tmp_path / "out"
    assert main(["predict", spec, "--model", str(model_path), "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_a_scheduler_that_does_not_answer_is_one_line(tmp_path, model_path, stack, capsys) -> None:
    source = _ome(tmp_path / "vol.ome.zarr", stack)
    out = tmp_path / "out"
    rc = main(["predict", str(source), "--model", str(model_path), "--out", str(out), "--scheduler", "tcp://127.0.0.1:9"])
    assert rc != 0
    err = capsys.readouterr().err.strip()
    note, error = err.splitlines()  # the tiny model's pixel-size line, then the error in one line
    assert "no pixel size" in note and "tcp://127.0.0.1:9" in error
    assert not out.exists() or not any(out.iterdir())


def test_the_cli_default_block_size_is_the_engines() -> None:
    from emseg.cli.predict import VOLUME_BLOCK

    assert VOLUME_BLOCK == BLOCK_SIZE


def test_a_volume_of_another_pixel_size_is_predicted_at_the_models_scale_and_keeps_its_own(tmp_path, model_path, stack, capsys) -> None:
    from dataclasses import replace

    from emseg.inference.volume.blockwise import input_block_size
    from emseg.networks.model_file import load_model, save_model

    model, config = load_model(model_path)
    sized = tmp_path / "m" / "model.pt"
    sized.parent.mkdir()
    save_model(sized, model, replace(config, pixel_size=[50, 4, 4]))
    stack = stack[:1]  # one slice: the model's grid has four times its pixels
    source = tmp_path / "vol.ome.zarr"
    omezarr.create_ome_zarr(source, stack.shape, stack.dtype, 32, (50.0, 8.0, 8.0), "nanometer")
    omezarr.open_level(source, 0)[:] = stack
    # blocks of 32 model pixels are 16 input pixels; whole chunks above CHUNK (the run below: 4 blocks of 64)
    assert input_block_size(32, (2.0, 2.0)) == 16 and input_block_size(4096, (2.0, 2.0)) == 2048 and input_block_size(4096, (0.5, 0.5)) == 8192
    assert input_block_size(4096, None) == 4096 and input_block_size(3000, (2.0, 2.0)) == 1024
    job, _ = plan_volume(open_volume(str(source)), sized, VolumeRequest(("proba",), 0.5, 0.5, False, 4, "cpu", False, 32, rescale=(2.0, 2.0)), tmp_path)
    assert job.block_size == 16 and job.chunk == 16
    out = tmp_path / "out"
    rc = main(["predict", str(source), "--model", str(sized), "--out", str(out), "--quiet", "--threshold", "0.5", "--block-size", "128"])
    assert rc == 0
    assert "emseg predict: input 8 nm/px, model 4 nm/px: predicted at 2x" in capsys.readouterr().err
    for kind in ("proba", "membrane", "cells"):
        written = open_volume(str(out / f"vol_{kind}.ome.zarr"))
        assert written.shape == stack.shape and written.scale == (50.0, 8.0, 8.0) and written.unit == "nanometer"
    # the in-memory path, told the same pixel size: equal up to interpolation at block borders and the statistics
    folder = tmp_path / "whole"
    assert main(["predict", str(tif(tmp_path / "vol.tif", stack)), "--model", str(sized), "--out", str(folder), "--quiet",
                 "--outputs", "proba", "--pixel-size", "8nm"]) == 0
    capsys.readouterr()
    whole = read_stack(folder / "vol_proba.tif")
    assert np.abs(_level0(out, "vol", "proba") - whole).mean() < 0.02
    rc = main(["predict", str(source), "--model", str(sized), "--out", str(tmp_path / "kept"), "--quiet", "--no-rescale", "--outputs", "proba"])
    assert rc == 0 and "predicted at" not in capsys.readouterr().err
    assert np.abs(_level0(tmp_path / "kept", "vol", "proba") - whole).mean() > 0.02  # not rescaled: another prediction
