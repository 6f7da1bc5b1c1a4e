"""The one interface every model kind implements: class probabilities for a batch of tiles."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ._spec import ModelSpec


class Adapter(Protocol):
    """``predict`` takes normalized tiles (N, C, T, T) float32 and returns class
    probabilities (N, K, T, T) float32 that sum to 1 over K."""

    spec: ModelSpec

    def predict(self, tiles: np.ndarray) -> np.ndarray: ...


def call_batch(adapter: Adapter) -> int:
    """Tiles per model call when none is asked for: 1 on a CPU, where one 256 px tile
    at a time keeps the activations in cache (per tile 10-25 % faster than 8 for the
    UNet, SegFormer and ukis-csmask, single-threaded: ``benchmarks/inference.py``),
    and 16 on a GPU, which needs batches to fill."""
    device = getattr(adapter, "device", None)
    if device is not None and getattr(device, "type", "cpu") != "cpu":
        return 16
    providers = getattr(adapter, "providers", ())
    return 16 if any(p != "CPUExecutionProvider" for p in providers) else 1


class TorchAdapter:
    """A torch ``nn.Module`` that returns logits (N, K, h, w); upsampled to the tile."""

    def __init__(self, module: Any, spec: ModelSpec, device: str = "cpu") -> None:
        import torch

        self.spec = spec
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()

    def logits(self, x: Any) -> Any:
        import torch.nn.functional as F

        out = self.module(x)
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.float32)).to(self.device)
            p = torch.softmax(self.logits(x).float(), dim=1)
            return p.cpu().numpy()
