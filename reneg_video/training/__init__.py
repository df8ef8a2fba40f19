"""Training: the trainer, its config, the differentiable denoise-and-decode path and per-sample refinement.
Imports from core, models and rewards, never from a command."""
