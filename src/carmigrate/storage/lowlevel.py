"""For backend and wrapper authors: how capabilities follow from Protocols.

Code that only uses stores never needs this module. A backend builds its
``capabilities`` with
[derive_capabilities][carmigrate.storage.lowlevel.derive_capabilities], so the
flags of the optional Protocols
([OPTIONAL_PROTOCOLS][carmigrate.storage.lowlevel.OPTIONAL_PROTOCOLS]) are
whatever its class implements. A store that wraps another subclasses
[StoreWrapper][carmigrate.storage.lowlevel.StoreWrapper], which implements
exactly the optional Protocols of the wrapped store and forwards them.
"""

from carmigrate.storage._base import OPTIONAL_PROTOCOLS, derive_capabilities
from carmigrate.storage._wrap import StoreWrapper

__all__ = [
    "OPTIONAL_PROTOCOLS",
    "StoreWrapper",
    "derive_capabilities",
]
