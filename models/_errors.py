"""The models package's error: a bad model reference, config, checkpoint or input.

It is an :class:`~chunkstore.errors.InputError`, so the project has one error root and
the CLI reports it like any other bad input (one line, exit 2)."""

from chunkstore.errors import InputError


class ModelError(InputError):
    """A model cannot be built or run as asked; the message says how to fix it."""
