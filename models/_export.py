"""Export a torch model to ONNX (dynamic batch axis) and check it against torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ._adapter import TorchAdapter
from ._errors import ModelError


def export_onnx(adapter: Any, out: str | Path, atol: float = 1e-4) -> dict[str, Any]:
    """Write ``out`` (.onnx) and its JSON sidecar; return the max |probability| difference."""
    import torch

    if not isinstance(adapter, TorchAdapter):
        raise ModelError("only torch models (unet, segformer, checkpoints) can be exported")
    out = Path(out)
    spec = adapter.spec
    out.parent.mkdir(parents=True, exist_ok=True)

    class _Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = adapter.module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return adapter.logits(x)

    x = torch.from_numpy(np.random.default_rng(0).standard_normal(
        (2, spec.in_channels, spec.tile, spec.tile)).astype(np.float32))
    torch.onnx.export(_Logits().eval(), (x,), str(out), input_names=["tiles"],
                      output_names=["logits"], dynamic_axes={"tiles": {0: "batch"},
                                                             "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    meta = {k: v for k, v in spec.to_dict().items() if k != "architecture"}
    meta["output"] = "logits"
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    from ._onnx import load_onnx

    onnx_model = load_onnx(str(out))
    x3 = np.random.default_rng(1).standard_normal(
        (3, spec.in_channels, spec.tile, spec.tile)).astype(np.float32)
    diff = float(np.abs(onnx_model.predict(x3) - adapter.predict(x3)).max())
    if diff > atol:
        raise ModelError(f"exported ONNX differs from torch by {diff:.2e} (> {atol})")
    return {"onnx": str(out), "sidecar": str(out.with_suffix(".json")),
            "max_abs_diff": diff, "batch_checked": 3}
