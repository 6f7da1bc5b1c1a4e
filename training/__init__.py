"""training (built in later issues)."""
