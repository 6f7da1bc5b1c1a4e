"""Checkpoints: ``model.safetensors`` + ``config.json`` (the ModelSpec). Never pickle."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
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


def models_folder(where: str) -> str | None:
    """The ``.../models`` folder above a checkpoint path or URI, which keeps checkpoints as
    ``NAME/VERSION`` (the store's layout); None when there is none."""
    head, sep, _ = where.rstrip("/").rpartition("/models/")
    return f"{head}/models" if sep else None


def missing_checkpoint(where: str, nearby: Sequence[str] = ()) -> ModelError:
    """The error for a checkpoint folder that is not there; ``nearby``: the checkpoints
    that are, in the same ``models`` folder."""
    if nearby:
        more = f" and {len(nearby) - 5} more" if len(nearby) > 5 else ""
        return ModelError(f"{where}: no such checkpoint folder: checkpoints next to it: "
                          f"{', '.join(nearby[:5])}{more}")
    return ModelError(f"{where}: no such checkpoint folder: check the path (a checkpoint "
                      f"folder holds {CONFIG} and {WEIGHTS}, as `satchunk train` writes to "
                      "STORE/models/NAME/VERSION)")


def load_checkpoint(read: Callable[[str], bytes], where: str,
                    runtime: Runtime | str = "cpu",
                    nearby: Callable[[], Sequence[str]] | None = None) -> TorchAdapter:
    """Load a checkpoint whose files ``read(name)`` returns; ``where`` names it in errors.
    Without its config and weights there is no checkpoint there: ``nearby()`` lists the
    checkpoints that are, for the message."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        spec = ModelSpec.from_dict(json.loads(read(CONFIG)))
    except FileNotFoundError:
        if not _has(read, WEIGHTS):
            raise missing_checkpoint(where, nearby() if nearby else ()) from None
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


def _has(read: Callable[[str], bytes], name: str) -> bool:
    """Whether ``read`` finds ``name`` (it reads it: only on the way to an error)."""
    try:
        read(name)
    except FileNotFoundError:
        return False
    return True
