"""The candidate chain that training and serving share: preprocessing, candidate
finding, pre-selection, the counter's encoding, the D2 and time-clusterization
baselines, the model bundle and the inference chain over rows of waveforms.
"""
