"""Any ONNX segmentation model, described by a JSON sidecar; run with onnxruntime.

On a CPU runtime the session uses onnxruntime's CPU provider only. On a GPU runtime it
uses the CUDA provider (the ``onnxruntime-gpu`` package, ``pip install 'satchunk[gpu]'``)
with the tiles bound in place on the GPU (IO binding, no host round trip); where that
provider is missing the model runs on the CPU and the adapter says so in ``note``.
The graph runs in the precision it was exported in (fp32): ``--precision`` does not
apply to ONNX models.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._adapter import numpy_predict
from ._device import Runtime
from ._errors import ModelError
from ._spec import ModelSpec, json_type, show

log = logging.getLogger(__name__)
_warned: set[str] = set()

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
NO_CUDA = ("onnxruntime has no CUDA provider here (pip install 'satchunk[gpu]' for "
           "onnxruntime-gpu): ONNX runs on the CPU")
CUDA_FAILED = ("onnxruntime's CUDA provider did not load here (CUDA / cuDNN libraries "
               "missing or mismatched?): ONNX runs on the CPU")

# onnxruntime element types -> (numpy, torch name) for the bound GPU output
_ORT_TYPES = {"tensor(float)": (np.float32, "float32"), "tensor(float16)": (np.float16, "float16"),
              "tensor(double)": (np.float64, "float64")}


def sidecar_path(path: Path) -> Path:
    for cand in (path.with_suffix(".json"), Path(f"{path}.json")):
        if cand.is_file():
            return cand
    raise ModelError(f"no JSON sidecar for {path}: write {path.with_suffix('.json')} with "
                     "name, version, bands, classes, tile, halo, mean, std (see README)")


def _cuda_index(device: str) -> int:
    """The GPU index of ``cuda`` / ``cuda:N`` (``cuda``: torch's current device)."""
    _, _, index = device.partition(":")
    if index:
        return int(index)
    import torch

    return torch.cuda.current_device() if torch.cuda.is_available() else 0


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


class OnnxAdapter:
    """``output`` is 'logits' (softmax applied here) or 'probabilities'.

    ``providers`` is what the session really uses; ``note`` a one-line message when a
    GPU was asked for but the model runs on the CPU (else None)."""

    def __init__(self, path: str | Path, spec: ModelSpec, output: str = "logits",
                 threads: int | None = None, runtime: Runtime | None = None) -> None:
        import onnxruntime as ort
        import torch  # before the CUDA provider loads: its CUDA libraries serve both

        runtime = runtime or Runtime()
        self.spec, self.output, self.path = spec, output, str(path)
        self.note: str | None = None
        self.device_id = 0
        if runtime.on_gpu and CUDA in ort.get_available_providers():
            self.device_id = _cuda_index(runtime.device)
            providers: list[Any] = [(CUDA, {"device_id": self.device_id}), CPU]
        else:
            if runtime.on_gpu:
                self.note = NO_CUDA
            providers = [CPU]
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or int(os.environ.get("SATCHUNK_MODEL_THREADS", 0))
        so.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(self.path, sess_options=so, providers=providers)
        except Exception as exc:
            raise ModelError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from None
        self.providers = tuple(self.session.get_providers())
        self.bound = CUDA in self.providers  # run with IO binding on the GPU
        if runtime.on_gpu and not self.bound and self.note is None:
            self.note = CUDA_FAILED
        if self.bound:  # the graph runs as exported: no autocast, no torch.compile
            self.runtime = dataclasses.replace(runtime, device=f"cuda:{self.device_id}",
                                               precision="fp32")
        else:
            self.runtime = dataclasses.replace(runtime, device="cpu", precision="fp32")
        if self.note:
            _warn_once(self.note)
        self.device = torch.device(self.runtime.device)
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        self._out_type = _ORT_TYPES.get(out.type, (np.float32, "float32"))
        shape = list(inp.shape)
        want = [None, spec.in_channels, spec.tile, spec.tile]
        if len(shape) != 4 or any(isinstance(s, int) and w is not None and s != w
                                  for s, w in zip(shape, want, strict=False)):
            raise ModelError(
                f"ONNX model {Path(path).name} takes input {shape}, but its sidecar asks for "
                f"[N, {spec.in_channels}, {spec.tile}, {spec.tile}] (bands + indices, tile): "
                "fix 'bands'/'indices'/'tile' in the sidecar")

    def _shape_error(self, got: Any, x_shape: Any) -> ModelError:
        return ModelError(f"ONNX model {Path(self.path).name} returned {got} for "
                          f"input {list(x_shape)}; expected [N, {self.spec.num_classes}, "
                          f"{x_shape[2]}, {x_shape[3]}]")

    def _run_cpu(self, x: Any) -> Any:
        import torch

        xs = x.detach().to("cpu", torch.float32).contiguous().numpy()
        out = self.session.run([self.output_name], {self.input_name: xs})[0]
        out = np.asarray(out, dtype=np.float32)
        if out.shape[:2] != (xs.shape[0], self.spec.num_classes) or out.shape[2:] != xs.shape[2:]:
            raise self._shape_error(list(out.shape), xs.shape)
        return torch.from_numpy(out)

    def _run_bound(self, x: Any) -> Any:
        """The session on ``x`` in place on its device (IO binding): the output goes
        straight into a torch tensor there. Used with the CUDA provider; the CPU works
        too (the tests run this path on a CPU)."""
        import torch

        x = x.detach().to(self.device, torch.float32).contiguous()
        n, _, h, w = x.shape
        shape = [n, self.spec.num_classes, h, w]
        np_type, torch_type = self._out_type
        out = torch.empty(shape, device=self.device, dtype=getattr(torch, torch_type))
        io = self.session.io_binding()
        kind, cuda = self.device.type, self.device.type == "cuda"
        io.bind_input(self.input_name, kind, self.device_id, np.float32, list(x.shape),
                      x.data_ptr())
        io.bind_output(self.output_name, kind, self.device_id, np_type, shape, out.data_ptr())
        if cuda:  # torch's writes to x are done before ORT (its own stream) reads them
            torch.cuda.synchronize(self.device)
        try:
            self.session.run_with_iobinding(io)
        except Exception as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            if "out of memory" in first.lower() or "allocate memory" in first.lower():
                # as torch's: the block function halves the batch and retries
                raise torch.OutOfMemoryError(f"ONNX model {Path(self.path).name}: {first}"
                                             ) from None
            raise ModelError(f"ONNX model {Path(self.path).name} failed on input "
                             f"{list(x.shape)} (expected output [N, {self.spec.num_classes}, "
                             f"{h}, {w}]): {first}") from None
        if cuda:  # and ORT's writes to out before torch reads them
            torch.cuda.synchronize(self.device)
        return out.float()

    def probabilities(self, x: Any) -> Any:
        """Normalized tiles (N, C, T, T) float32 on ``device`` -> (N, K, T, T) there."""
        import torch

        with torch.inference_mode():
            out = self._run_bound(x) if self.bound else self._run_cpu(x)
            return torch.softmax(out, 1) if self.output == "logits" else out

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        return numpy_predict(self, tiles)


def load_onnx(path: str, threads: int | None = None, runtime: Runtime | None = None
              ) -> OnnxAdapter:
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"ONNX model {path} not found")
    spec, output = read_sidecar(sidecar_path(p), p.name)
    return OnnxAdapter(p, spec, output, threads, runtime)


SIDECAR_BYTES = 1 << 20  # a sidecar is a few hundred bytes; anything near this is not one


def read_sidecar(side: Path, model_file: str) -> tuple[ModelSpec, str]:
    """The spec and output kind that the sidecar ``side`` describes, every field checked
    before the model is loaded or any work starts: a one-line :class:`ModelError` naming
    the file, the field and what it should be."""
    try:
        with side.open("rb") as f:
            raw = f.read(SIDECAR_BYTES + 1)
    except OSError as exc:
        raise ModelError(f"sidecar {side} cannot be read ({exc.strerror or exc})") from None
    if len(raw) > SIDECAR_BYTES:
        raise ModelError(f"sidecar {side} is larger than {SIDECAR_BYTES >> 20} MB: it holds "
                         "name, version, bands, classes, ... (see README)")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        first = str(exc).splitlines()[0][:120] if str(exc) else "nested too deeply"
        raise ModelError(f"sidecar {side} is not valid JSON ({first})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"sidecar {side} holds a JSON {json_type(meta)}: write an object of "
                         "name, version, bands, classes, ... (see README)")
    output = meta.pop("output", "logits")
    if output not in ("logits", "probabilities"):
        raise ModelError(f"sidecar {side}: field 'output': {show(output)} is not 'logits' "
                         "or 'probabilities'")
    meta.setdefault("version", "1")
    meta["architecture"] = {"kind": "onnx", "output": output, "file": model_file}
    try:
        return ModelSpec.from_dict(meta), output
    except ModelError as exc:
        raise ModelError(f"sidecar {side}: {exc}") from None
