"""Model specs and adapters: UNet, SegFormer, ONNX, the ukis-csmask preset, checkpoints."""

from ._adapter import Adapter, TorchAdapter, call_batch, numpy_predict
from ._checkpoint import (
    CONFIG,
    METRICS,
    WEIGHTS,
    load_checkpoint,
    models_folder,
    save_checkpoint,
)
from ._device import (
    DEVICES,
    PRECISIONS,
    Runtime,
    check_device,
    cuda_count,
    onnx_has_cuda,
    resolve,
    to_device,
)
from ._errors import ModelError
from ._export import export_onnx
from ._indices import index_bands, spectral_index
from ._inputs import (
    ALIASES,
    Radiometry,
    check_reflectance,
    input_range,
    match_bands,
    model_inputs,
    valid_pixels,
)
from ._registry import (
    is_checkpoint_ref,
    is_preset,
    load_model,
    new_model,
    preset_bands,
)
from ._spec import INDICES, ModelSpec

__all__ = [
    "ALIASES", "CONFIG", "DEVICES", "INDICES", "METRICS", "PRECISIONS", "WEIGHTS", "Adapter",
    "ModelError", "ModelSpec", "Radiometry", "Runtime", "TorchAdapter", "call_batch",
    "check_device", "check_reflectance", "cuda_count", "export_onnx", "index_bands",
    "input_range", "is_checkpoint_ref", "is_preset", "load_checkpoint", "load_model",
    "match_bands", "model_inputs", "models_folder", "new_model", "numpy_predict",
    "onnx_has_cuda", "preset_bands", "resolve", "save_checkpoint", "spectral_index",
    "to_device", "valid_pixels",
]
