"""Prefect flows: one per DVC stage, the pipeline, inference and the `dndx` command line."""
