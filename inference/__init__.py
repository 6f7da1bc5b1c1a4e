"""inference (built in later issues)."""
