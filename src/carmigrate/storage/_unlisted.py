"""Entries a store lists but cannot offer as objects, and the Protocol that reports them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterator

    from carmigrate.storage._base import ObjectInfo

__all__ = ["SupportsFullListing", "Unmigratable", "name_as_text"]


@attrs.frozen(kw_only=True)
class Unmigratable:
    r"""A source entry that exists but cannot be offered as an object.

    ``Store.list`` yields objects only; what it leaves out (a symlink, a
    FIFO, a file whose name is not UTF-8, a reserved ``.carmigrate.*`` name,
    an S3 key that breaks the key rules, a folder marker with content) would
    otherwise vanish from a migration without a word. A store that
    implements [SupportsFullListing][carmigrate.storage.SupportsFullListing]
    reports each as one of these, and the planner lists it in the plan as an
    ``UNMIGRATABLE`` item, so a report never says "complete" while it exists.

    Attributes:
        name: The entry's name relative to the store's root, as text: a
            valid key is itself; bytes that are not UTF-8 appear as ``\xNN``
            escapes ([name_as_text][carmigrate.storage.lowlevel.name_as_text]).
        reason: Why it cannot be migrated, for people (``"symbolic link (not
            followed)"``, ``"name is not UTF-8"``, the key rule it breaks).
        size: Its size in bytes, if the store knows it (``0`` otherwise).
    """

    name: str
    reason: str
    size: int = 0


def name_as_text(name: str | bytes) -> str:
    r"""A file system name as printable, storable text.

    A ``str`` that came from ``os.fsdecode`` (undecodable bytes carried as
    lone surrogates) and ``bytes`` both become UTF-8 text with each byte that
    is not UTF-8 written as ``\xNN``, so the name can be shown, stored in
    SQLite and JSON, and still tells the bytes apart.
    """
    raw = name if isinstance(name, bytes) else os.fsencode(name)
    return raw.decode("utf-8", "backslashreplace")


@runtime_checkable
class SupportsFullListing(Protocol):
    """A store that can say what its listing leaves out.

    [LocalStore][carmigrate.storage.LocalStore] and
    [S3Store][carmigrate.storage.S3Store] implement it;
    [plan][carmigrate.migrate.plan] uses it for the source, so every entry
    under the prefix is planned or listed as not migratable. Like
    [SupportsUploadCleanup][carmigrate.storage.SupportsUploadCleanup] it has
    no [Capabilities][carmigrate.storage.Capabilities] flag: test for it with
    ``isinstance``; [StoreWrapper][carmigrate.storage.lowlevel.StoreWrapper]
    forwards it.
    """

    def list_all(self, prefix: str = "") -> Iterator[ObjectInfo | Unmigratable]:
        """Like ``list(prefix)``, with every entry it leaves out as an ``Unmigratable``.

        The objects come exactly as ``list`` yields them (in key order when
        ``capabilities.sorted_listing``); the ``Unmigratable`` entries come
        in between, in no promised order.

        Raises:
            StorageError: As ``list``.
        """
        ...
