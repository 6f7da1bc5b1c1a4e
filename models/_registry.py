"""Model references -> adapters.

``unet[:plain|resnet18|resnet34|resnet50]``, ``segformer`` (untrained, seeded
weights: for tests and as a starting point; they read blue, green, red, nir or the
bands given), ``onnx:PATH``, ``ukis-csmask[:4b|6b][:l1c|l2a]``, or a checkpoint (a
local folder, or a store URI that the caller resolves by passing ``read``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._adapter import Adapter, TorchAdapter
from ._checkpoint import (
    CONFIG,
    PICKLE_SUFFIXES,
    build_module,
    load_checkpoint,
    models_folder,
)
from ._device import Runtime
from ._errors import ModelError
from ._inputs import ALIASES
from ._spec import ModelSpec

DEFAULT_BANDS = ("blue", "green", "red", "nir")
DEFAULT_CLASSES = ("background", "foreground")
PRESETS = ("unet", "segformer")  # untrained: built for the bands they are given
KINDS = (*PRESETS, "onnx", "ukis-csmask")


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


def is_preset(ref: str) -> bool:
    """Whether ``ref`` is an untrained preset (``unet[:encoder]``, ``segformer``)."""
    return ref.split(":", 1)[0] in PRESETS


def preset_bands(scenes: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """The bands an untrained preset reads from scenes with these bands: blue, green,
    red, nir where every scene has them, else the bands all of them share."""
    def has(bands: Sequence[str], name: str) -> bool:
        return any(a in bands for a in ALIASES.get(name, (name,)))

    if all(has(s, b) for s in scenes for b in DEFAULT_BANDS):
        return DEFAULT_BANDS
    shared = tuple(b for b in scenes[0] if all(b in s for s in scenes[1:])) if scenes else ()
    if not shared:
        raise ModelError("the scenes share no band for an untrained model to read: predict "
                         "scenes of one kind at a time")
    return shared


def load_model(ref: str, read: Callable[[str], bytes] | None = None,
               threads: int | None = None, runtime: Runtime | None = None,
               bands: Sequence[str] | None = None,
               nearby: Callable[[], Sequence[str]] | None = None) -> Adapter:
    """The adapter for ``ref`` on ``runtime`` (default: the CPU, fp32); ``read(name)``
    reads a checkpoint's files from a store, ``nearby()`` lists the checkpoints next to
    it (for the message when there is none). ``bands``: what an untrained preset reads
    (default blue, green, red, nir)."""
    runtime = runtime or Runtime()
    if threads:
        import torch

        torch.set_num_threads(threads)
    base = ref.split(":", 1)[0]
    if base in PRESETS:
        return new_model(ref, bands=tuple(bands or DEFAULT_BANDS), runtime=runtime)
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
        folder = Path(ref).expanduser()
        if not folder.is_dir() and not _is_path(ref):
            raise ModelError(f"unknown model {ref!r}: use unet, segformer, onnx:PATH, "
                             "ukis-csmask[:4b|6b][:l1c|l2a], a checkpoint folder or "
                             "s3://.../models/NAME/VERSION")

        def read_file(name: str) -> bytes:
            try:
                return (folder / name).read_bytes()
            except NotADirectoryError:  # a file named as the folder
                raise FileNotFoundError(name) from None

        def next_to_it() -> list[str]:
            root = models_folder(str(folder))
            return [] if root is None else sorted(
                str(p.parent) for p in Path(root).glob(f"*/*/{CONFIG}"))

        read, nearby = read_file, next_to_it
    return load_checkpoint(read, ref, runtime, nearby)


def _is_path(ref: str) -> bool:
    """Whether ``ref`` is written as a path (not a bare name like ``resnet50``)."""
    return "/" in ref or os.sep in ref or ref.startswith((".", "~"))
