"""Blanking credentials out of log text.

botocore at DEBUG prints signed request headers (``Credential=KEYID/...``,
``Signature=...``) and presigned query strings; a log line may also quote an
environment, and a URL may carry a password (``http://user:password@host``, an
endpoint or a proxy). :class:`RedactingFilter` rewrites every record that passes a
handler so none of that, nor the value of any AWS credential variable, reaches the
output. :func:`redact_record` does the same to a job record before it is written.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import Any

from chunkstore import Credentials, redact_urls  # the one home of URL passwords

_BLANK = "***"
# header and query forms of SigV4/SigV2 parts, whatever the quoting around them
_PATTERNS = [
    re.compile(r"(?i)(Credential=)[^\s,;&'\"/]+"),
    re.compile(r"(?i)(Signature=)[0-9A-Za-z%+/=]+"),
    re.compile(r"(?i)(Signature:\s*)[0-9a-f]{16,}"),  # botocore.auth's "Signature:\n<hex>"
    re.compile(r"(?i)(X-Amz-Security-Token['\"]?\s*[:=]\s*b?['\"]?)[^\s,;&'\"]+"),
    re.compile(r"(?i)(AWSAccessKeyId=)[^\s,;&'\"]+"),
    re.compile(r"(?i)(Authorization['\"]?\s*[:=]\s*b?['\"]?AWS )[^\s'\"]+"),  # SigV2 KEY:sig
]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with signature parts, URL passwords and each of ``secrets`` blanked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _BLANK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + _BLANK, text)
    return redact_urls(text)


def redact_record(value: Any, secrets: Iterable[str] = ()) -> Any:
    """``value`` (a job record: dicts, lists and scalars) with :func:`redact` applied to
    every string in it; tuples become lists, as in JSON."""
    secrets = list(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: redact_record(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_record(v, secrets) for v in value]
    return value


def secrets_of(credentials: Credentials | None = None) -> list[str]:
    """The credential values to blank: ``credentials`` and the AWS variables."""
    values = [os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                          "AWS_SESSION_TOKEN")]
    if credentials is not None:
        values += [credentials.access_key_id, credentials.secret_access_key,
                   credentials.session_token]
    # the longest first, so a secret containing another is blanked whole
    return sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)


class RedactingFilter(logging.Filter):
    """A handler filter that blanks credentials in the message and traceback text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = redact(text, self.secrets)
        if clean != text:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True
