"""``python -m carmigrate`` runs the command-line interface."""

import sys

from carmigrate.cli import main

if __name__ == "__main__":
    sys.exit(main())
