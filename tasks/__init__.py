"""Prefect tasks: one chunk, one trial or one registry step each; they load, call dndx, save."""
