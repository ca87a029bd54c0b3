"""The front-end domain: profiles of unlabelled waveforms (:mod:`.profile`) and of
files (:mod:`.files`), and the verdict whether inputs lie inside the training domain.
"""
