"""The ``carmigrate`` command line: a thin argparse front end with no logic.

Each command group lives in its own private module and only translates
arguments into library calls and results into text or JSON. Exit codes: 0
success, 1 the checked thing is bad (for example a CAR that fails
verification), 2 usage errors or inputs that cannot be processed.
"""

from carmigrate.cli._main import main

__all__ = ["main"]
