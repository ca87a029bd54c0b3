"""Files: the waveform readers (ROOT, HDF5, Parquet, NPZ), the labelled layouts and
their writer, ingestion into splits, the pipeline's own datasets and the
inference results store.
"""
