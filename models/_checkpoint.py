"""Checkpoints: ``model.safetensors`` + ``config.json`` (the ModelSpec). Never pickle."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ._adapter import TorchAdapter
from ._device import Runtime
from ._errors import ModelError
from ._spec import ModelSpec

WEIGHTS, CONFIG, METRICS = "model.safetensors", "config.json", "metrics.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")


def build_module(spec: ModelSpec) -> Any:
    """An untrained torch module for ``spec.architecture['kind']`` (unet or segformer)."""
    arch = dict(spec.architecture)
    kind = arch.get("kind")
    if kind == "unet":
        from ._unet import build_unet

        return build_unet(spec.in_channels, spec.num_classes, arch)
    if kind == "segformer":
        from ._segformer import build_segformer

        return build_segformer(spec.in_channels, spec.num_classes, arch)
    raise ModelError(f"model config: architecture kind {kind!r} is not a torch model "
                     "(unet or segformer)")


def save_checkpoint(module: Any, spec: ModelSpec,
                    metrics: Mapping[str, Any] | None = None) -> dict[str, bytes]:
    """The files of a checkpoint, by name."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    files = {WEIGHTS: save(state, metadata={"model_id": spec.model_id}),
             CONFIG: json.dumps(spec.to_dict(), indent=2).encode()}
    if metrics is not None:
        files[METRICS] = json.dumps(dict(metrics), indent=2, default=float).encode()
    return files


def load_checkpoint(read: Callable[[str], bytes], where: str,
                    runtime: Runtime | str = "cpu") -> TorchAdapter:
    """Load a checkpoint whose files ``read(name)`` returns; ``where`` names it in errors."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        spec = ModelSpec.from_dict(json.loads(read(CONFIG)))
    except FileNotFoundError:
        raise ModelError(f"no {CONFIG} in checkpoint {where}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise ModelError(f"checkpoint {where}: {CONFIG} is not a model config ({exc})") from None
    try:
        state = load(read(WEIGHTS))
    except FileNotFoundError:
        raise ModelError(f"no {WEIGHTS} in checkpoint {where}") from None
    except (SafetensorError, ValueError, OSError) as exc:
        raise ModelError(f"checkpoint {where}: {WEIGHTS} is corrupt ({exc})") from None
    module = build_module(spec)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"checkpoint {where} does not fit its {spec.architecture.get('kind')} "
                         f"config ({first})") from None
    return TorchAdapter(module, spec, runtime)
