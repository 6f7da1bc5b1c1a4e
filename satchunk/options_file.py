"""Command options from a YAML or JSON file (``satchunk train --config run.yaml``).

Plain data only: the file is read with ``yaml.safe_load``, so a Python tag
(``!!python/object/apply:os.system``) or any other custom tag is refused, never
constructed. Keys are the command's option names (``class_weights`` or
``class-weights``); each value is checked against the option's type.

The file is at most ``MAX_BYTES``, and YAML anchors and aliases (``&a`` / ``*a``) and
nesting deeper than ``MAX_DEPTH`` are refused from its tokens, before anything is built:
options never need them, and a few hundred bytes of nested aliases expand to gigabytes.
Every error is one short line: values are echoed cut to a few dozen characters.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable, Mapping
from typing import Any

from chunkstore import InputError

MAX_BYTES = 1 << 20  # an options file is a few lines; anything near this is not one
MAX_DEPTH = 4  # option: [name, ...] is 2 deep

_SHOW = reprlib.Repr()
_SHOW.maxstring, _SHOW.maxother, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxlevel = 40, 40, 4, 4, 2

# option name -> its type: int, float, str, or list (of str; a comma-separated string too)
OptionTypes = Mapping[str, type]

# train's options a --config file may set, with their types
TRAIN_OPTIONS: OptionTypes = {
    "collection": list, "model": str, "out": str, "epochs": int, "steps": int, "batch": int,
    "lr": float, "patch": int, "sampler": str, "exponent": float, "loss": str,
    "class_weights": str, "seed": int, "patience": int, "workers": int, "bands": list,
    "indices": list, "name": str, "version": str, "device": str, "precision": str,
    "compile": bool, "val_patches": int,
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
    data = _load(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: holds a {type(data).__name__}; write a mapping of option: "
                         "value, one per line")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_") if isinstance(key, str) else ""
        if name not in types:
            raise InputError(f"{path}: {_show(key)} is not an option here: use "
                             f"{', '.join(sorted(types))}")
        out[name] = _typed(path, name, value, types[name])
    return out


def _load(path: str) -> Any:
    """The plain data in the file at ``path``: at most MAX_BYTES, no tags, no aliases."""
    import yaml

    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file: give the path of a YAML or JSON options file"
                         ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({str(exc.strerror or exc)[:80]})") from None
    if len(raw) > MAX_BYTES:
        raise InputError(f"{path}: larger than {MAX_BYTES >> 20} MB: an options file holds a "
                         "few lines of option: value")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        _check_tokens(path, yaml.scan(text, Loader=yaml.SafeLoader))  # before anything is built
        return yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        where = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        tag = re.search(r"constructor for the tag '([^']+)'", str(exc.problem))
        if not tag:  # a key that is a list or mapping
            raise InputError(f"{path}: {where}{str(exc.problem)[:80]}: write a mapping of "
                             "option: value, one per line") from None
        name = tag.group(1) if len(tag.group(1)) <= 80 else tag.group(1)[:77] + "..."
        raise InputError(f"{path}: {where}tag {name} is refused: satchunk reads plain YAML "
                         "(no Python or other custom tags)") from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:160]
        raise InputError(f"{path}: not valid YAML or JSON ({first})") from None
    except InputError:
        raise
    except ValueError as exc:  # an int of more digits than Python reads
        raise InputError(f"{path}: a value cannot be read ({str(exc)[:80]})") from None


def _check_tokens(path: str, tokens: Iterable[Any]) -> None:
    """Refuse anchors, aliases and nesting deeper than MAX_DEPTH, from the tokens alone."""
    import yaml

    opens = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken,
             yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken)
    closes = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
    depth = 0
    for token in tokens:
        line = token.start_mark.line + 1
        if isinstance(token, yaml.AnchorToken | yaml.AliasToken):
            raise InputError(f"{path}: line {line}: YAML anchors and aliases (&name, *name) "
                             "are refused: write each value out in full")
        if isinstance(token, opens):
            depth += 1
            if depth > MAX_DEPTH:
                raise InputError(f"{path}: line {line}: nested deeper than {MAX_DEPTH} levels: "
                                 "write a mapping of option: value, one per line")
        elif isinstance(token, closes):
            depth -= 1


def _show(value: Any) -> str:
    """``value`` for a one-line message: at most about 60 characters."""
    try:
        text = _SHOW.repr(value)
    except ValueError:  # an int of more digits than Python will print
        text = f"a long {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def _typed(path: str, name: str, value: Any, kind: type) -> Any:
    if value is None:
        raise InputError(f"{path}: {name}: has no value: give one, or remove the line for "
                         "the default")
    if kind is list:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str | int) and not isinstance(v, bool)
                                           for v in value):
            return [str(v) for v in value]
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif isinstance(value, bool) or isinstance(value, list | dict):
        pass
    elif kind is int and isinstance(value, int):
        return value
    elif kind is float and isinstance(value, int | float):
        return float(value)
    elif kind is str and isinstance(value, str | int | float):
        return str(value)
    raise InputError(f"{path}: {name}: {_show(value)} is not a{'n' if kind is int else ''} "
                     f"{'list of names' if kind is list else kind.__name__}")
