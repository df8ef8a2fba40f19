"""Render: what a command runs once its arguments are checked, one module per command (`video` renders
a prompt set for reneg-video, `validate` the null/handcrafted/ReNeg arms of reneg-validate, `report` the
validation report). The commands parse, check and report; these modules trust what they are given.
Imports from core, models, rewards and training, never from a command."""
