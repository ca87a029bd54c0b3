"""Scoring: metrics, pi/K separation, dE/dx, evaluation of models against the tuned
baselines (:mod:`.tuning`), ONNX parity.
"""
