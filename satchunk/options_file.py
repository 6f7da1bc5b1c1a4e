"""Command options from a YAML or JSON file (``satchunk train --config run.yaml``).

Plain data only: the file is read with ``yaml.safe_load``, so a Python tag
(``!!python/object/apply:os.system``) or any other custom tag is refused, never
constructed. Keys are the command's option names (``class_weights`` or
``class-weights``); each value is checked against the option's type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chunkstore import InputError

# option name -> its type: int, float, str, or list (of str; a comma-separated string too)
OptionTypes = Mapping[str, type]

# train's options a --config file may set, with their types
TRAIN_OPTIONS: OptionTypes = {
    "collection": list, "model": str, "out": str, "epochs": int, "steps": int, "batch": int,
    "lr": float, "patch": int, "sampler": str, "exponent": float, "loss": str,
    "class_weights": str, "seed": int, "patience": int, "workers": int, "bands": list,
    "indices": list, "name": str, "version": str, "device": str, "val_patches": int,
}


def with_options_file(ctx: Any, path: str | None, types: OptionTypes) -> dict[str, Any]:
    """A command's option values (click context ``ctx``), with those of the file at
    ``path`` in place of every option not given on the command line or by environment."""
    values = dict(ctx.params)
    if not path:
        return values
    for name, value in read_options(path, types).items():
        source = getattr(ctx.get_parameter_source(name), "name", "DEFAULT")
        if source in ("COMMANDLINE", "ENVIRONMENT"):
            continue
        values[name] = value
    return values


def read_options(path: str, types: OptionTypes) -> dict[str, Any]:
    """The options in ``path``, keyed by option name (underscores), values typed."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file: give the path of a YAML or JSON options file"
                         ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        tag = re.search(r"'([^']+)'", str(exc.problem))
        where = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        raise InputError(f"{path}: {where}tag {tag.group(1) if tag else '?'} is refused: "
                         "satchunk reads plain YAML (no Python or other custom tags)") from None
    except yaml.YAMLError as exc:
        first = str(exc).replace("\n", " ")[:160]
        raise InputError(f"{path}: not valid YAML or JSON ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: holds a {type(data).__name__}; write a mapping of option: "
                         "value, one per line")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in types:
            raise InputError(f"{path}: {key!r} is not an option here: use "
                             f"{', '.join(sorted(types))}")
        out[name] = _typed(path, name, value, types[name])
    return out


def _typed(path: str, name: str, value: Any, kind: type) -> Any:
    bad = InputError(f"{path}: {name}: {value!r} is not a{'n' if kind is int else ''} "
                     f"{'list of names' if kind is list else kind.__name__}")
    if value is None:
        raise InputError(f"{path}: {name}: has no value: give one, or remove the line for "
                         "the default")
    if kind is list:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
            return [str(v) for v in value]
        raise bad
    if isinstance(value, bool) or isinstance(value, list | dict):
        raise bad
    if kind is int and isinstance(value, int):
        return value
    if kind is float and isinstance(value, int | float):
        return float(value)
    if kind is str and isinstance(value, str | int | float):
        return str(value)
    raise bad
