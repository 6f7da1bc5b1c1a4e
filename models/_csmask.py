"""The ``ukis-csmask`` preset: the package's real pretrained cloud / cloud-shadow UNets
(ONNX) with the band order, normalization and tile size from its JSON."""

from __future__ import annotations

import json
from pathlib import Path

from ._device import Runtime
from ._errors import ModelError
from ._onnx import OnnxAdapter
from ._spec import ModelSpec

CLASSES = ("clear", "cloud", "cloud_shadow")
COLORS = ("#2ca02c", "#f0f0f0", "#4b4b4b")
HALO = 26  # tiles step by 204 px: ukis-csmask's own 20 % overlap of 256 px tiles
OFFSET = (-51) % 204  # and start where its own tiling starts (51 px before the image)


def parse_preset(ref: str) -> tuple[str, str]:
    """'ukis-csmask[:4b|6b][:l1c|l2a]' -> (bands '4b'/'6b', level 'l1c'/'l2a')."""
    parts = ref.split(":")[1:]
    bands, level = "6b", "l1c"
    for p in parts:
        if p.lower() in ("4b", "6b"):
            bands = p.lower()
        elif p.lower() in ("l1c", "l2a"):
            level = p.lower()
        else:
            raise ModelError(f"unknown ukis-csmask option {p!r} in {ref!r}: use "
                             "ukis-csmask[:4b|6b][:l1c|l2a]")
    return bands, level


def load_csmask(ref: str, threads: int | None = None, runtime: Runtime | None = None
                ) -> OnnxAdapter:
    try:
        import ukis_csmask
    except ImportError:
        raise ModelError("the ukis-csmask preset needs the `ukis-csmask` package: "
                         "pip install ukis-csmask") from None
    bands, level = parse_preset(ref)
    path = Path(ukis_csmask.__file__).parent / f"model_{bands}_{level}.onnx"
    meta = json.loads(path.with_suffix(".json").read_text())
    stats = meta["data"]["dataset_statistics"]
    spec = ModelSpec(
        name=f"ukis-csmask-{bands}-{level}", version=meta["model"]["version"],
        bands=tuple(stats["band_names"]), classes=CLASSES, colors=COLORS,
        tile=int(meta["data"]["target_size"][0]), halo=HALO, tile_offset=OFFSET,
        mean=tuple(float(v) for v in stats["img"][0]),
        std=tuple(float(v) for v in stats["img"][1]),
        architecture={"kind": "onnx", "output": "logits", "file": path.name,
                      "preset": f"ukis-csmask:{bands}:{level}",
                      "encoder": meta["model"].get("encoder_name"),
                      "decoder": meta["model"].get("decoder_name"),
                      "package_version": ukis_csmask.__version__},
    )
    return OnnxAdapter(path, spec, "logits", threads, runtime)
