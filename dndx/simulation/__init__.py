"""Simulation: the numpy waveform generator (:mod:`.generator`) and the tracks of cells
built from it (:mod:`.tracks`). Imports only the base modules of :mod:`dndx`.
"""
