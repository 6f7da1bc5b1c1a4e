"""models (built in later issues)."""
