"""The shapes world's commands: `reneg-build-shapes` (build) and `python -m shapes_world.commands.eval`."""
