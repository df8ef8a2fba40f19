import sys

from .commands.video import main

sys.exit(main())
