"""The one interface every model kind implements: class probabilities for a batch of tiles,
on the model's device."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ._device import Runtime
from ._spec import ModelSpec


class Adapter(Protocol):
    """``probabilities`` takes normalized tiles (N, C, T, T) float32 on ``device`` and
    returns class probabilities (N, K, T, T) float32 there, summing to 1 over K.
    ``predict`` is the same on numpy arrays (host memory)."""

    spec: ModelSpec
    runtime: Runtime

    @property
    def device(self) -> Any: ...  # a torch.device

    def probabilities(self, x: Any) -> Any: ...

    def predict(self, tiles: np.ndarray) -> np.ndarray: ...


def call_batch(adapter: Adapter) -> int:
    """Tiles per model call when none is asked for: 1 on a CPU, where one 256 px tile
    at a time keeps the activations in cache (per tile 10-25 % faster than 8 for the
    UNet, SegFormer and ukis-csmask, single-threaded: ``benchmarks/inference.py``),
    and 128 on a GPU, which needs large batches to fill (the block function halves it
    when the GPU runs out of memory)."""
    return 128 if adapter.runtime.on_gpu else 1


def numpy_predict(adapter: Adapter, tiles: np.ndarray) -> np.ndarray:
    """:meth:`Adapter.probabilities` on host arrays."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.float32)).to(adapter.device)
    return adapter.probabilities(x).cpu().numpy()


class TorchAdapter:
    """A torch ``nn.Module`` that returns logits (N, K, h, w); upsampled to the tile.

    On a GPU, inputs go channels-last and the forward pass runs under autocast in the
    runtime's precision; softmax is always taken in fp32. ``compile`` wraps the module
    with ``torch.compile``; batches are then padded to a power of two, so at most
    log2(batch) + 1 sizes compile, not one per shard's last batch."""

    def __init__(self, module: Any, spec: ModelSpec, runtime: Runtime | str = "cpu") -> None:
        import torch

        if isinstance(runtime, str):
            runtime = Runtime(runtime)
        self.spec, self.runtime = spec, runtime
        self.device = torch.device(runtime.device)
        self.module = module.to(self.device).eval()
        if runtime.on_gpu:
            self.module = self.module.to(memory_format=torch.channels_last)
        self._forward = torch.compile(self.module) if runtime.compile else self.module

    def forward_through(self, wrapped: Any) -> None:
        """Run the forward pass through ``wrapped`` (the module under a wrapper such as
        DistributedDataParallel), compiled when the runtime says so."""
        import torch

        self._forward = torch.compile(wrapped) if self.runtime.compile else wrapped

    def logits(self, x: Any) -> Any:
        import torch
        import torch.nn.functional as F

        n = x.shape[0]
        if self.runtime.compile and n & (n - 1):  # not a power of two: pad with zeros
            pad = x.new_zeros((1 << n.bit_length()) - n, *x.shape[1:])
            x = torch.cat([x, pad]).contiguous(memory_format=_layout(x))
        out = self._forward(x)[:n]
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def probabilities(self, x: Any) -> Any:
        import torch

        with torch.inference_mode():
            if self.runtime.on_gpu:
                x = x.contiguous(memory_format=torch.channels_last)
            if self.runtime.precision == "fp32":
                logits = self.logits(x)
            else:
                dtype = torch.bfloat16 if self.runtime.precision == "bf16" else torch.float16
                with torch.autocast(self.device.type, dtype=dtype):
                    logits = self.logits(x)
            return torch.softmax(logits.float(), dim=1)

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        return numpy_predict(self, tiles)


def _layout(x: Any) -> Any:
    """The memory format ``x`` is in (channels-last on GPUs)."""
    import torch

    return torch.channels_last if x.dim() == 4 and x.is_contiguous(
        memory_format=torch.channels_last) and not x.is_contiguous() else torch.contiguous_format
