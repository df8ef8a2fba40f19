"""Commands: one module per CLI with its parser; `common` holds what they share. Only commands and the
benchmarks import them."""
