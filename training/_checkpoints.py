"""Training checkpoints in the store.

``OUT/`` holds the best model (``model.safetensors``, ``config.json``,
``metrics.json``) plus ``split.json``, so ``satchunk predict --model OUT`` runs
it; ``OUT/last/`` holds the latest epoch with the optimizer and schedule state
(``state.safetensors`` + ``state.json``) that ``--resume`` continues from.
Nothing is pickled. Weights go first, the config after, so a config never
names weights that are not there yet.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chunkstore import InputError, Store
from models import CONFIG, WEIGHTS, ModelError, ModelSpec, save_checkpoint

from ._split import SPLITS

LAST = "last"
SPLIT = "split.json"
STATE_TENSORS, STATE_JSON = "state.safetensors", "state.json"


def reader(store: Store) -> Any:
    def read(name: str) -> bytes:
        if not store.exists(name):
            raise FileNotFoundError(name)
        return store.read_bytes(name)

    return read


def has_checkpoint(store: Store) -> bool:
    return store.exists(CONFIG) or store.exists(f"{LAST}/{CONFIG}")


def saved_split(store: Store) -> dict[str, list[tuple]] | None:
    """The split stored with a checkpoint (shards as tuples), or None."""
    if not store.exists(SPLIT):
        return None
    saved = json.loads(store.read_bytes(SPLIT))
    return {k: [tuple(s) for s in saved[k]] for k in SPLITS}


def _write(store: Store, prefix: str, files: Mapping[str, bytes]) -> None:
    order = [WEIGHTS, *(n for n in files if n not in (WEIGHTS, CONFIG)), CONFIG]
    for name in order:
        if name in files:
            store.write_bytes(f"{prefix}{name}", files[name])


def save_best(store: Store, module: Any, spec: ModelSpec, metrics: Mapping[str, Any],
              split: Mapping[str, Any]) -> None:
    files = save_checkpoint(module, spec, metrics)
    files[SPLIT] = json.dumps(split, indent=1).encode()
    _write(store, "", files)


def save_last(store: Store, module: Any, spec: ModelSpec, metrics: Mapping[str, Any],
              optimizer: Any, schedule: Any, state: Mapping[str, Any]) -> None:
    from safetensors.torch import save

    files = save_checkpoint(module, spec, metrics)
    opt = optimizer.state_dict()
    tensors = {f"{i}.{k}": v.detach().cpu().contiguous()
               for i, s in opt["state"].items() for k, v in s.items()}
    files[STATE_TENSORS] = save(tensors)
    files[STATE_JSON] = json.dumps({**state, "param_groups": opt["param_groups"],
                                    "schedule": schedule.state_dict()}, indent=1).encode()
    _write(store, f"{LAST}/", files)


def load_last(store: Store, module: Any, spec: ModelSpec, optimizer: Any, schedule: Any
              ) -> dict[str, Any]:
    """Restore weights, optimizer and schedule from ``OUT/last``; returns the saved
    state (epoch, best score, history). Refuses a checkpoint of another model."""
    from safetensors.torch import load

    from models import load_checkpoint

    where = store.url(LAST)
    if not store.exists(f"{LAST}/{CONFIG}"):
        raise InputError(f"--resume: no checkpoint at {where}; train without --resume first")
    read = reader(store.child(LAST))
    try:
        saved = load_checkpoint(read, where)
    except ModelError as exc:
        raise InputError(f"--resume: {exc}") from None
    theirs, ours = saved.spec.to_dict(), spec.to_dict()
    for k in ("mean", "std"):  # computed from the data; the saved values are kept
        theirs.pop(k), ours.pop(k)
    if theirs != ours:
        diff = sorted(k for k in ours if ours[k] != theirs.get(k))
        raise InputError(f"--resume: the checkpoint at {where} does not fit this model "
                         f"(differs in {', '.join(diff)}); use the same options or another --out")
    try:
        module.load_state_dict(saved.module.state_dict(), strict=True)
    except RuntimeError as exc:
        raise InputError(f"--resume: the checkpoint at {where} does not fit this model "
                         f"({str(exc).splitlines()[0]})") from None
    state = json.loads(read(STATE_JSON))
    tensors = load(read(STATE_TENSORS))
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        i, name = key.split(".", 1)
        opt_state.setdefault(int(i), {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": state.pop("param_groups")})
    schedule.load_state_dict(state.pop("schedule"))
    state["spec"] = saved.spec
    return state
