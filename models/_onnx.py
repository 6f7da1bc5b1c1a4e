"""Any ONNX segmentation model, described by a JSON sidecar; run with onnxruntime."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import ModelError
from ._spec import ModelSpec


def sidecar_path(path: Path) -> Path:
    for cand in (path.with_suffix(".json"), Path(f"{path}.json")):
        if cand.is_file():
            return cand
    raise ModelError(f"no JSON sidecar for {path}: write {path.with_suffix('.json')} with "
                     "name, version, bands, classes, tile, halo, mean, std (see README)")


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class OnnxAdapter:
    """``output`` is 'logits' (softmax applied here) or 'probabilities'."""

    def __init__(self, path: str | Path, spec: ModelSpec, output: str = "logits",
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        self.spec, self.output, self.path = spec, output, str(path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or int(os.environ.get("SATCHUNK_MODEL_THREADS", 0))
        so.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(self.path, sess_options=so,
                                                providers=ort.get_available_providers())
        except Exception as exc:
            raise ModelError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from None
        self.providers = tuple(p for p in self.session.get_providers()
                               if p != "AzureExecutionProvider")
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        want = [None, spec.in_channels, spec.tile, spec.tile]
        if len(shape) != 4 or any(isinstance(s, int) and w is not None and s != w
                                  for s, w in zip(shape, want, strict=False)):
            raise ModelError(
                f"ONNX model {Path(path).name} takes input {shape}, but its sidecar asks for "
                f"[N, {spec.in_channels}, {spec.tile}, {spec.tile}] (bands + indices, tile): "
                "fix 'bands'/'indices'/'tile' in the sidecar")

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(tiles, dtype=np.float32)
        out = self.session.run(None, {self.input_name: x})[0].astype(np.float32)
        if out.shape[:2] != (x.shape[0], self.spec.num_classes) or out.shape[2:] != x.shape[2:]:
            raise ModelError(f"ONNX model {Path(self.path).name} returned {list(out.shape)} for "
                             f"input {list(x.shape)}; expected [N, {self.spec.num_classes}, "
                             f"{x.shape[2]}, {x.shape[3]}]")
        return _softmax(out) if self.output == "logits" else out


def load_onnx(path: str, threads: int | None = None) -> OnnxAdapter:
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"ONNX model {path} not found")
    side = sidecar_path(p)
    try:
        meta: dict[str, Any] = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"sidecar {side} is not valid JSON ({exc})") from None
    output = meta.pop("output", "logits")
    if output not in ("logits", "probabilities"):
        raise ModelError(f"sidecar {side}: output must be 'logits' or 'probabilities'")
    meta.setdefault("version", "1")
    meta["architecture"] = {"kind": "onnx", "output": output, "file": p.name}
    try:
        spec = ModelSpec.from_dict(meta)
    except TypeError as exc:
        raise ModelError(f"sidecar {side}: {exc}") from None
    return OnnxAdapter(p, spec, output, threads)
