"""Validation of ids used to build object keys. Pure: no I/O."""

import re

from .errors import InvalidIdError

_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
RESERVED = frozenset({"catalog.json", "collection.json"})  # their folders would clash
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def validate_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a safe key component, else raise InvalidIdError.

    Allowed: letters, digits, ``.``, ``_``, ``-``; 1-128 characters; not ``.``/``..``
    and no ``..`` anywhere, so no key can climb out of its prefix.
    """
    if not isinstance(value, str) or not _ID.fullmatch(value) or ".." in value:
        shown = repr(value)[:80]
        raise InvalidIdError(
            f"invalid {what} {shown}: use 1-128 characters from A-Z a-z 0-9 . _ - "
            "(no '..', slashes or spaces)"
        )
    if value.startswith("."):
        raise InvalidIdError(f"invalid {what} {value!r}: must not start with '.'")
    if value in RESERVED:
        raise InvalidIdError(f"invalid {what} {value!r}: the STAC catalog's own files are "
                             "named so: pick another name")
    return value


SEPARATOR = "__"  # joins a scene id and a model id into a derived item's id


def validate_scene_id(value: str) -> str:
    """``value`` if it can name a scene item: a valid id without ``__``, which only
    derived items' ids hold (a mask is ``SCENE__MODEL``), so the two never collide."""
    validate_id(value, "item id")
    if SEPARATOR in value:
        raise InvalidIdError(
            f"invalid scene id {value!r}: '{SEPARATOR}' is reserved for derived items "
            f"(masks are SCENE{SEPARATOR}MODEL): rename it with a single '_'")
    return value


def validate_bucket(name: str) -> str:
    """Return ``name`` if it is a valid S3 bucket name, else raise InvalidIdError."""
    if not isinstance(name, str) or not _BUCKET.fullmatch(name) or ".." in name:
        raise InvalidIdError(
            f"invalid bucket {repr(name)[:80]}: use 3-63 characters from a-z 0-9 . -, "
            "starting and ending with a letter or digit")
    return name
