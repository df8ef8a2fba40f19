"""Training: the trainer, its config, the differentiable denoise-and-decode path, per-sample refinement and
the shapes world's build. Imports from core, models and rewards, never from a command."""
