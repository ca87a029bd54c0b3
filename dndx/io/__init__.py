"""Files: the reader interface (:mod:`dndx.io.source`) with a module per format
(:mod:`~dndx.io.root`, :mod:`~dndx.io.hdf5`, :mod:`~dndx.io.parquet`,
:mod:`~dndx.io.npz`), the waveform readers on top of it (:mod:`dndx.io.readers`),
the labelled layouts and their writer, ingestion into splits, the pipeline's own
datasets and the inference results store.
"""
