"""ONNX adapters on a runtime: ``probabilities`` on torch tensors on the adapter's device,
the CPU provider only on a CPU, the CUDA provider (IO binding) on a GPU where
onnxruntime-gpu is installed, and the CPU with a ``note`` where it is not."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnxruntime
import pytest
import torch

from models import ModelError, Runtime, _onnx, call_batch, export_onnx, load_model, new_model
from models._onnx import CPU, CUDA, NO_CUDA, load_onnx

HAS_CUDA_PROVIDER = CUDA in onnxruntime.get_available_providers()
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or not HAS_CUDA_PROVIDER,
    reason="needs a CUDA GPU and onnxruntime-gpu (the CUDA execution provider)")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A tiny exported UNet (4 bands, 3 classes, 64 px tiles) and its sidecar."""
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    adapter = new_model("unet", tile=64, halo=8, depth=2, width=4, seed=1,
                        mean=(0.1,) * 4, std=(0.05,) * 4)
    export_onnx(adapter, path)
    return path, adapter


def _tiles(spec, n=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, spec.in_channels, spec.tile, spec.tile)).astype(np.float32)


def _models(tiny_onnx, runtime=None):
    return {"tiny": load_onnx(str(tiny_onnx[0]), runtime=runtime),
            "csmask": load_model("ukis-csmask:4b", runtime=runtime)}


@pytest.mark.parametrize("which", ["tiny", "csmask"])
def test_probabilities_on_cpu_match_predict(tiny_onnx, which):
    model = _models(tiny_onnx)[which]
    assert model.device == torch.device("cpu")
    assert model.runtime == Runtime()
    assert model.providers == (CPU,)  # not Azure or whatever else the build offers
    assert model.note is None
    assert call_batch(model) == 1
    tiles = _tiles(model.spec, n=2)
    p = model.probabilities(torch.from_numpy(tiles))
    assert isinstance(p, torch.Tensor) and p.device.type == "cpu" and p.dtype == torch.float32
    assert tuple(p.shape) == (2, model.spec.num_classes, model.spec.tile, model.spec.tile)
    np.testing.assert_allclose(p.sum(1).numpy(), 1.0, atol=1e-5)
    assert (p >= 0).all()
    pred = model.predict(tiles)
    assert isinstance(pred, np.ndarray) and pred.dtype == np.float32
    np.testing.assert_array_equal(pred, p.numpy())
    # and a non-contiguous view gives the same numbers
    view = torch.from_numpy(np.ascontiguousarray(tiles.transpose(0, 1, 3, 2))).transpose(2, 3)
    assert not view.is_contiguous()
    np.testing.assert_allclose(model.probabilities(view).numpy(), pred, atol=1e-6)


def test_exported_onnx_matches_torch(tiny_onnx):
    path, torch_model = tiny_onnx
    model = load_onnx(str(path))
    tiles = _tiles(model.spec, n=3, seed=4)
    np.testing.assert_allclose(model.predict(tiles), torch_model.predict(tiles), atol=1e-4)


def test_probabilities_output_is_passed_through(tiny_onnx, tmp_path):
    """A sidecar saying output 'probabilities': no softmax here (the graph's output as is)."""
    path, torch_model = tiny_onnx
    (tmp_path / "p.onnx").write_bytes(path.read_bytes())
    side = json.loads(path.with_suffix(".json").read_text())
    side["output"] = "probabilities"
    (tmp_path / "p.json").write_text(json.dumps(side))
    model = load_onnx(str(tmp_path / "p.onnx"))
    tiles = _tiles(model.spec, n=2, seed=5)
    with torch.no_grad():
        logits = torch_model.logits(torch.from_numpy(tiles)).numpy()
    np.testing.assert_allclose(model.probabilities(torch.from_numpy(tiles)).numpy(), logits,
                               atol=1e-4)


@pytest.mark.parametrize("bound", [False, True], ids=["run", "io-binding"])
def test_output_of_the_wrong_shape_is_one_line(tiny_onnx, tmp_path, bound):
    """A sidecar that promises more classes than the model returns: one line, on the
    plain path and on the IO-bound one (the CUDA provider's), each saying what it got."""
    path, _ = tiny_onnx
    (tmp_path / "w.onnx").write_bytes(path.read_bytes())
    side = json.loads(path.with_suffix(".json").read_text())
    side["classes"] = [*side["classes"], "extra"]
    side.pop("colors", None)
    (tmp_path / "w.json").write_text(json.dumps(side))
    model = load_onnx(str(tmp_path / "w.onnx"))
    model.bound = bound
    with pytest.raises(ModelError) as err:
        model.probabilities(torch.from_numpy(_tiles(model.spec, n=2)))
    msg = str(err.value)
    assert "\n" not in msg
    if bound:
        assert "w.onnx failed on input [2, 4, 64, 64]" in msg
        assert "(expected output [N, 3, 64, 64])" in msg
    else:
        assert "returned [2, 2, 64, 64]" in msg and "expected [N, 3, 64, 64]" in msg


@pytest.mark.parametrize("which", ["tiny", "csmask"])
def test_io_binding_path_matches_plain_run(tiny_onnx, which):
    """The path the CUDA provider takes (inputs and outputs bound in place as torch
    tensors), run here on the CPU: the same numbers as ``session.run``."""
    model = _models(tiny_onnx)[which]
    tiles = _tiles(model.spec, n=3, seed=9)
    want = model.predict(tiles)
    model.bound = True
    x = torch.from_numpy(np.ascontiguousarray(tiles.transpose(0, 1, 3, 2))).transpose(2, 3)
    p = model.probabilities(x)
    assert p.device.type == "cpu" and p.dtype == torch.float32 and p.shape == want.shape
    np.testing.assert_allclose(p.numpy(), want, atol=1e-6)
    np.testing.assert_allclose(model.predict(tiles[:1]), want[:1], atol=1e-6)


@pytest.mark.skipif(HAS_CUDA_PROVIDER, reason="onnxruntime here has the CUDA provider")
def test_gpu_asked_without_cuda_provider_runs_on_cpu(tiny_onnx, monkeypatch, caplog):
    monkeypatch.setattr(_onnx, "_warned", set())
    cpu = _models(tiny_onnx)
    with caplog.at_level(logging.WARNING, logger="models._onnx"):
        gpu = _models(tiny_onnx, Runtime("cuda", "bf16"))
    warnings = [r for r in caplog.records if r.name == "models._onnx"]
    assert [r.getMessage() for r in warnings] == [NO_CUDA]  # once, for two adapters
    assert "pip install 'satchunk[gpu]'" in NO_CUDA and "\n" not in NO_CUDA
    for name, model in gpu.items():
        assert model.device == torch.device("cpu")
        assert model.runtime == Runtime("cpu", "fp32")
        assert not model.runtime.on_gpu and call_batch(model) == 1
        assert model.note == NO_CUDA
        assert model.providers == (CPU,)
        tiles = _tiles(model.spec, n=2, seed=7)
        p = model.probabilities(torch.from_numpy(tiles))
        assert p.device.type == "cpu"
        np.testing.assert_array_equal(p.numpy(), cpu[name].predict(tiles))


def test_cuda_provider_asked_for_with_index_and_failing_falls_back(tiny_onnx, monkeypatch):
    """The provider list handed to onnxruntime on ``cuda:N`` (nothing else implicitly);
    a CUDA provider offered but not loading (here: the CPU build) leaves a note."""
    seen = []
    real = onnxruntime.InferenceSession

    def session(path, sess_options=None, providers=None, **kw):
        seen.append(providers)
        return real(path, sess_options=sess_options, providers=[CPU], **kw)

    monkeypatch.setattr(_onnx, "_warned", set())
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", CUDA, "AzureExecutionProvider", CPU])
    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    model = load_onnx(str(tiny_onnx[0]), runtime=Runtime("cuda:1", "bf16"))
    assert seen == [[(CUDA, {"device_id": 1}), CPU]]
    assert model.device == torch.device("cpu") and model.runtime == Runtime("cpu", "fp32")
    assert model.note and "CUDA provider did not load" in model.note and "\n" not in model.note
    load_onnx(str(tiny_onnx[0]), runtime=Runtime("cpu"))
    assert seen[-1] == [CPU]


@needs_cuda
@pytest.mark.parametrize("which", ["tiny", "csmask"])
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_provider_probabilities_on_gpu(tiny_onnx, which, device):
    model = _models(tiny_onnx, Runtime(device, "bf16"))[which]
    cpu = _models(tiny_onnx)[which]
    assert model.providers[0] == CUDA and model.note is None
    assert model.device == torch.device("cuda", 0) and model.runtime.on_gpu
    assert call_batch(model) == 128
    tiles = _tiles(model.spec, n=5, seed=2)
    # tiles made by torch on the GPU just before (the session must see them finished)
    x = (torch.from_numpy(tiles).to(model.device) * 3.0) / 3.0
    p = model.probabilities(x)
    assert p.device == model.device and p.dtype == torch.float32
    assert tuple(p.shape) == (5, model.spec.num_classes, model.spec.tile, model.spec.tile)
    torch.testing.assert_close(p.sum(1), torch.ones_like(p[:, 0]), atol=1e-5, rtol=0)
    want = cpu.predict(tiles)
    assert float(np.abs(p.cpu().numpy() - want).max()) < 1e-3
    assert float(np.abs(model.predict(tiles) - want).max()) < 1e-3
    # a batch of another size right after, and a non-contiguous input
    p2 = model.probabilities(x[1:4].transpose(2, 3))
    want2 = cpu.predict(np.ascontiguousarray(tiles[1:4].transpose(0, 1, 3, 2)))
    assert float(np.abs(p2.cpu().numpy() - want2).max()) < 1e-3
