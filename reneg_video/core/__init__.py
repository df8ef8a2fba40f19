"""Core: errors, files (embeddings, specs, prompts, videos), encoder families, injection, presets, statistics.

Imports nothing from the layers above (models, rewards, training, commands, bench): tests/repo/test_layers.py.
"""
