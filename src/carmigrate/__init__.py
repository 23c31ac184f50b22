"""carmigrate: move content-addressed data between stores and into Filecoin deals.

The package is layered (see the architecture page): formats and backends
(`carmigrate.cid`, `carmigrate.car`, `carmigrate.commp`,
`carmigrate.storage`), FRC-0058 aggregation, the migration engine, recipes
and the CLI. ``import carmigrate`` loads nothing heavy; import the
subpackage you need.
"""

import logging

from carmigrate._version import __version__

__all__ = ["__version__"]

# The library logs under "carmigrate.*" and never configures handlers: an
# application (or the CLI's -v/-q) decides where records go.
logging.getLogger("carmigrate").addHandler(logging.NullHandler())
