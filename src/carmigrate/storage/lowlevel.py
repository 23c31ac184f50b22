"""For backend and wrapper authors: the pieces a Store is built from.

In the spirit of ``trio.lowlevel``: code that only uses stores never needs
this module; everything it needs is in [carmigrate.storage][].

- Keys: every method of a backend calls
  [validate_key][carmigrate.storage.lowlevel.validate_key] (or
  [validate_prefix][carmigrate.storage.lowlevel.validate_prefix] for
  ``list``) first, so no key can escape the store;
  [DEFAULT_MAX_KEY_LENGTH][carmigrate.storage.lowlevel.DEFAULT_MAX_KEY_LENGTH]
  is its limit;
  [keys_to_check][carmigrate.storage.lowlevel.keys_to_check] holds a whole
  list of keys to the rules in one pass.
- Writes: ``write`` checks its ``checksums`` argument with
  [normalize_checksums][carmigrate.storage.lowlevel.normalize_checksums]
  (any name in
  [SUPPORTED_CHECKSUMS][carmigrate.storage.lowlevel.SUPPORTED_CHECKSUMS])
  before any work, and consumes its data with
  [iter_chunks][carmigrate.storage.lowlevel.iter_chunks].
- Capabilities: a backend builds its ``capabilities`` with
  [derive_capabilities][carmigrate.storage.lowlevel.derive_capabilities], so
  the flags of the optional Protocols
  ([OPTIONAL_PROTOCOLS][carmigrate.storage.lowlevel.OPTIONAL_PROTOCOLS]) are
  whatever its class implements.
- Wrappers: a store that wraps another subclasses
  [StoreWrapper][carmigrate.storage.lowlevel.StoreWrapper], which implements
  exactly the optional Protocols of the wrapped store and forwards them.
- Full listings: a backend whose ``list`` leaves entries out (names that
  are not keys, special files) reports them from ``list_all``
  ([SupportsFullListing][carmigrate.storage.SupportsFullListing]), with
  names made printable by
  [name_as_text][carmigrate.storage.lowlevel.name_as_text].
"""

from carmigrate.storage._base import OPTIONAL_PROTOCOLS, derive_capabilities
from carmigrate.storage._io import SUPPORTED_CHECKSUMS, iter_chunks, normalize_checksums
from carmigrate.storage._keys import (
    DEFAULT_MAX_KEY_LENGTH,
    keys_to_check,
    validate_key,
    validate_prefix,
)
from carmigrate.storage._unlisted import name_as_text
from carmigrate.storage._wrap import StoreWrapper

__all__ = [
    "DEFAULT_MAX_KEY_LENGTH",
    "OPTIONAL_PROTOCOLS",
    "SUPPORTED_CHECKSUMS",
    "StoreWrapper",
    "derive_capabilities",
    "iter_chunks",
    "keys_to_check",
    "name_as_text",
    "normalize_checksums",
    "validate_key",
    "validate_prefix",
]
