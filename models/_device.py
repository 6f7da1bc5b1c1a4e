"""Where and how a model runs: the device, the precision, compilation.

``auto`` picks a CUDA GPU when torch sees one, else the CPU; on a GPU the default
precision is bf16 autocast (fp16 where the GPU lacks bf16), on a CPU fp32, so the
CPU path gives the same numbers as ever. A GPU asked for but absent is a
:class:`ModelError` (one line, exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import ModelError

DEVICES = "auto | cpu | cuda | cuda:N"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Runtime:
    """A resolved choice: ``device`` is ``cpu``, ``cuda`` or ``cuda:N``; ``precision``
    is ``fp32``, ``bf16`` or ``fp16`` (autocast: weights stay fp32)."""

    device: str = "cpu"
    precision: str = "fp32"
    compile: bool = False

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


def cuda_count() -> int:
    """CUDA devices torch sees here (0 without torch's CUDA build or a driver)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_device(name: str) -> str:
    """``name`` if well formed (``auto``, ``cpu``, ``cuda``, ``cuda:N``), else one line."""
    base, _, index = name.partition(":")
    if name in ("auto", "cpu", "cuda") or (base == "cuda" and index.isdigit()):
        return name
    raise ModelError(f"--device {name!r}: use {DEVICES}")


def resolve(device: str = "auto", precision: str = "auto", compile: bool = False,
            gpus: int | None = None) -> Runtime:
    """The :class:`Runtime` for a ``--device`` / ``--precision`` / ``--compile`` request;
    ``gpus`` is how many GPUs the work can use (default: those torch sees here)."""
    check_device(device)
    if precision not in PRECISIONS:
        raise ModelError(f"--precision {precision!r}: use {', '.join(PRECISIONS)}")
    n = cuda_count() if gpus is None else gpus
    if device == "auto":
        device = "cuda" if n else "cpu"
    elif device.startswith("cuda"):
        _, _, index = device.partition(":")
        if not n:
            raise ModelError(f"--device {device}: no CUDA GPU is visible here (torch sees "
                             "none): use --device cpu, or run where a GPU is")
        if index and int(index) >= n:
            raise ModelError(f"--device {device}: only {n} GPU(s) are visible "
                             f"(cuda:0 .. cuda:{n - 1})")
    if precision == "auto":
        precision = _gpu_precision() if device.startswith("cuda") else "fp32"
    return Runtime(device, precision, compile)


def _gpu_precision() -> str:
    import torch

    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return "fp16"
    return "bf16"


def onnx_has_cuda() -> bool:
    """onnxruntime here offers its CUDA provider (the ``onnxruntime-gpu`` package)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def to_device(raw: Any, device: Any) -> Any:
    """Host array (or CPU tensor) -> tensor on ``device``, as stored; via pinned memory
    to a GPU (the copy is asynchronous; torch's pinned-memory cache reuses the buffers;
    a tensor pinned already is not copied again on the host)."""
    import torch

    if isinstance(raw, torch.Tensor):
        t = raw
    else:
        if not raw.flags.writeable:  # a piece read from bytes: torch wants writable memory
            raw = raw.copy()
        t = torch.from_numpy(np.ascontiguousarray(raw))
    device = torch.device(device)
    if device.type == "cpu":
        return t
    if t.dtype == torch.uint16:  # CUDA kernels barely know uint16: its bits, widened there
        t = t.view(torch.int16)
        on = (t if t.is_pinned() else t.pin_memory()).to(device, non_blocking=True)
        return on.to(torch.int32).bitwise_and_(0xFFFF)
    return (t if t.is_pinned() else t.pin_memory()).to(device, non_blocking=True)
