"""The training engine: configs, optimiser and schedule, checkpoints, the training loop, evaluation."""
