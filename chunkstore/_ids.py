"""Validation of ids used to build object keys. Pure: no I/O."""

import re

from .errors import InvalidIdError

_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
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
    return value


def validate_bucket(name: str) -> str:
    """Return ``name`` if it is a valid S3 bucket name, else raise InvalidIdError."""
    if not isinstance(name, str) or not _BUCKET.fullmatch(name) or ".." in name:
        raise InvalidIdError(
            f"invalid bucket {repr(name)[:80]}: use 3-63 characters from a-z 0-9 . -, "
            "starting and ending with a letter or digit")
    return name
