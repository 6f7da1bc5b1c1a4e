"""The models package's error: a bad model reference, config, checkpoint or input."""


class ModelError(ValueError):
    """A model cannot be built or run as asked; the message says how to fix it."""
