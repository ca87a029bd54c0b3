"""Training helpers that need no deep-learning framework: the counter's training
splits and loss weights, and the hyperparameter scan grid.
"""
