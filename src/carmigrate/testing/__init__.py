"""Public test kit: the Store conformance suite and a fault injector.

Nothing in ``carmigrate`` imports this package; it is for tests, yours and
ours. [check_store][carmigrate.testing.check_store] is the one definition of
"a correct Store": run it against any backend, including your own.
[FlakyStore][carmigrate.testing.FlakyStore] wraps a store and injects
failures, slowness and connections cut mid-read.

Hypothesis strategies live in the separate submodule
``carmigrate.testing.strategies`` (it needs the ``testing`` extra).
"""

from carmigrate.testing._conformance import STORE_CHECKS, check_store
from carmigrate.testing._flaky import FlakyStore

__all__ = [
    "FlakyStore",
    "STORE_CHECKS",
    "check_store",
]
