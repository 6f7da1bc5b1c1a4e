"""Local output files of exports: checked before any work, written under a hidden
partial name and renamed when complete, write failures reported in one line."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chunkstore import InputError


def check_output(out: str | Path) -> Path:
    out = Path(out)
    if out.is_dir():
        raise InputError(f"{out} is a directory: name an output file")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent} is not a directory: create it first")
    if not os.access(out.parent, os.W_OK):
        raise InputError(f"{out.parent} is not writable: choose another output path")
    return out


def layer_name(out: Path) -> str:
    """A layer name GDAL accepts, from the file's stem."""
    return re.sub(r"[^A-Za-z0-9_]", "_", out.stem) or "polygons"


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """Yield a hidden partial path next to ``out`` (same suffix, so drivers accept it);
    it becomes ``out`` only when the block completes."""
    partial = out.with_name(f".{out.stem}.partial{out.suffix}")
    try:
        yield partial
        os.replace(partial, out)
    except OSError as exc:  # disk full, permissions, ...: one line, not a traceback
        raise InputError(f"{out}: cannot write it ({exc.strerror or exc})") from None
    finally:
        partial.unlink(missing_ok=True)
