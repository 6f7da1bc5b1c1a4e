"""Model references -> adapters.

``unet[:plain|resnet18|resnet34|resnet50]``, ``segformer`` (untrained, seeded
weights: for tests and as a starting point), ``onnx:PATH``,
``ukis-csmask[:4b|6b][:l1c|l2a]``, or a checkpoint (a local folder, or a store
URI that the caller resolves by passing ``read``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._adapter import Adapter, TorchAdapter
from ._checkpoint import PICKLE_SUFFIXES, build_module, load_checkpoint
from ._device import Runtime
from ._errors import ModelError
from ._spec import ModelSpec

DEFAULT_BANDS = ("blue", "green", "red", "nir")
DEFAULT_CLASSES = ("background", "foreground")
KINDS = ("unet", "segformer", "onnx", "ukis-csmask")


def new_model(kind: str, *, bands: tuple[str, ...] = DEFAULT_BANDS,
              classes: tuple[str, ...] = DEFAULT_CLASSES, indices: tuple[str, ...] = (),
              tile: int = 256, halo: int = 32, tile_offset: int = 0,
              name: str | None = None, version: str = "0",
              mean: tuple[float, ...] = (), std: tuple[float, ...] = (), seed: int = 0,
              runtime: Runtime | None = None, **arch: Any) -> TorchAdapter:
    """A freshly initialised torch model (``unet[:encoder]`` or ``segformer``)."""
    import torch

    base, _, option = kind.partition(":")
    if base == "unet":
        arch = {"kind": "unet", "encoder": option or arch.pop("encoder", "plain"), **arch}
        arch.setdefault("depth", 4)
        arch.setdefault("width", 16 if arch["encoder"] == "plain" else 64)
    elif base == "segformer" and not option:
        arch = {"kind": "segformer", "refine": True, **arch}
    else:
        raise ModelError(f"unknown model kind {kind!r}: unet[:plain|resnet18|resnet34|"
                         "resnet50] or segformer")
    if name is None:  # the encoder is part of the default name, so model ids differ
        name = base if arch.get("encoder", "plain") == "plain" else f"{base}-{arch['encoder']}"
    spec = ModelSpec(name=name, version=version, bands=tuple(bands),
                     classes=tuple(classes), indices=tuple(indices), tile=tile, halo=halo,
                     tile_offset=tile_offset,
                     mean=tuple(mean), std=tuple(std), architecture=arch)
    torch.manual_seed(seed)
    try:
        module = build_module(spec)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    return TorchAdapter(module, spec, runtime or Runtime())


def is_checkpoint_ref(ref: str) -> bool:
    base = ref.split(":", 1)[0]
    return base not in KINDS and not ref.startswith("onnx:")


def load_model(ref: str, read: Callable[[str], bytes] | None = None,
               threads: int | None = None, runtime: Runtime | None = None) -> Adapter:
    """The adapter for ``ref`` on ``runtime`` (default: the CPU, fp32); ``read(name)``
    reads a checkpoint's files from a store."""
    runtime = runtime or Runtime()
    if threads:
        import torch

        torch.set_num_threads(threads)
    base = ref.split(":", 1)[0]
    if base in ("unet", "segformer"):
        return new_model(ref, runtime=runtime)
    if ref.startswith("onnx:"):
        from ._onnx import load_onnx

        return load_onnx(ref[5:], threads, runtime)
    if base == "ukis-csmask":
        from ._csmask import load_csmask

        return load_csmask(ref, threads, runtime)
    if ref.lower().endswith(PICKLE_SUFFIXES):
        raise ModelError(f"{ref}: pickled checkpoints are refused (loading one runs arbitrary "
                         "code); save the state_dict with safetensors and a config.json")
    if read is None:
        folder = Path(ref)
        if not folder.is_dir():
            raise ModelError(f"unknown model {ref!r}: use unet, segformer, onnx:PATH, "
                             "ukis-csmask[:4b|6b][:l1c|l2a], a checkpoint folder or "
                             "s3://.../models/NAME/VERSION")

        def read(name: str) -> bytes:
            return (folder / name).read_bytes()

    return load_checkpoint(read, ref, runtime)
