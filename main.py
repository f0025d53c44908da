"""stable-dreamfusion compatible entry point: ``python main.py --text "a hamburger" -O``."""

import sys

from dreamfusion.cli import main

if __name__ == "__main__":
    sys.exit(main())
