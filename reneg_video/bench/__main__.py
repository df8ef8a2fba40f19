"""`python -m reneg_video.bench`: see `bench/cli.py`."""

import sys

from .cli import main

sys.exit(main())
