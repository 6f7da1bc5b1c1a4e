"""Validation of ids used to build object keys. Pure: no I/O."""

import re

from .errors import InvalidIdError

_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


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

