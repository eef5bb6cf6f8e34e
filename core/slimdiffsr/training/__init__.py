"""Training step logic (the scripts in training/ only parse arguments)."""
