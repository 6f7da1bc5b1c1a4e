"""One error hierarchy; every message says what is wrong and how to fix it."""


class SatchunkError(Exception):
    """Base of every error a user can cause. The CLI prints it on one line and exits 2."""

    exit_code = 2


class InvalidIdError(SatchunkError, ValueError):
    """An id that cannot be used as part of an object key."""


class StoreError(SatchunkError, OSError):
    """The store cannot be reached, or a bucket or key is missing."""


class InputError(SatchunkError, ValueError):
    """A raw input (scene, band, label) that cannot be ingested."""


class NotFoundError(SatchunkError, KeyError):
    """A collection, item or object that is not in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; we do not
        return str(self.args[0]) if self.args else ""


class JobError(SatchunkError, RuntimeError):
    """A job's task failed on the cluster; the message names the shard. Exit 1."""

    exit_code = 1


class CorruptObjectError(SatchunkError, OSError):
    """An object in the store is damaged (empty, cut short, checksum mismatch); the
    message names its key. Exit 1."""

    exit_code = 1


class LockedError(SatchunkError, RuntimeError):
    """Another job is writing the same output. Exit 2: wait, or re-run later."""
