"""The diff: a merge-join of two sorted listings into actions.

Deciding is separate from listing (rclone's march/sync split, aws-cli's
comparator): this module sees only two key-sorted streams of
[ListingEntry][carmigrate.migrate.ListingEntry] values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Final, NamedTuple

from carmigrate.digests import algorithm
from carmigrate.migrate._listing import ListingEntry, check_sorted
from carmigrate.migrate._model import Action

__all__ = ["DiffEntry", "compare", "diff", "join"]

_COPY = Action.COPY


def _strength(name: str) -> int:
    return algorithm(name).strength


_EXTRA = Action.EXTRA


class DiffEntry(NamedTuple):
    """The diff's decision for one key.

    Attributes:
        action: What to do.
        key: The key (both sides use the same key space).
        source: The source's entry (``None`` for ``EXTRA``).
        destination: The destination's entry (``None`` for ``COPY``).
        reason: Why ``SKIP`` or ``CONFLICT`` was chosen.
    """

    action: Action
    key: str
    source: ListingEntry | None
    destination: ListingEntry | None
    reason: str | None = None


def compare(
    source: ListingEntry, destination: ListingEntry
) -> tuple[Action, str | None]:
    """Decide between ``SKIP``, ``VERIFY`` and ``CONFLICT`` for a key on both sides.

    Different sizes, or any digest both sides vouch for that differs, is a
    ``CONFLICT``. Equal size and at least one equal common digest (any
    registered algorithm; ETags are never compared) is a ``SKIP``, whose
    reason names the strongest digest both sides had. Equal size and no
    common digest is a ``VERIFY``: only reading content can tell.

    Digests may also be given as their canonical JSON text (as the planner's
    external sort carries them).

    Returns:
        The action and, for ``SKIP`` and ``CONFLICT``, the reason.
    """
    # by position (key, size, etag, digests, cold): plain tuples work too
    if source[1] != destination[1]:
        return Action.CONFLICT, (
            f"size {source[1]} at the source, {destination[1]} at the destination"
        )
    sd: Any = source[3]
    dd: Any = destination[3]
    if not sd or not dd:
        return Action.VERIFY, None
    if type(sd) is str or type(dd) is str:  # the planner's sorted runs: JSON text
        if sd == dd and '","' not in sd:  # one digest, the same: name it cheaply
            name = sd[2 : sd.index('"', 2)]
            return Action.SKIP, _SAME.get(name) or f"same size and {name}"
        sd = json.loads(sd) if type(sd) is str else sd
        dd = json.loads(dd) if type(dd) is str else dd
    if sd == dd:  # the common case: the same digests both sides
        if len(sd) == 1:
            for name in sd:
                return Action.SKIP, _SAME.get(name) or f"same size and {name}"
        return Action.SKIP, f"same size and {max(sd, key=_strength)}"
    common = [n for n in sd if n in dd]
    if not common:
        return Action.VERIFY, None
    common.sort(key=_strength, reverse=True)  # the strongest names the reason
    for name in common:
        if sd[name] != dd[name]:
            return Action.CONFLICT, f"{name} differs"
    return Action.SKIP, f"same size and {common[0]}"


_SAME: Final = {n: f"same size and {n}" for n in ("md5", "sha1", "sha256", "sha512")}


def join(
    source: Iterator[tuple[Any, ...]],
    destination: Iterator[ListingEntry],
    source_entry: int = 1,
) -> Iterator[tuple[Action, str, Any, ListingEntry | None, str | None]]:
    """Merge-join ``(key, payload)`` tuples with destination entries (internal).

    ``payload[source_entry]`` must be the source's ``ListingEntry``. Both
    inputs must be sorted by key; no order check is made here.
    """
    s = next(source, None)
    d = next(destination, None)
    while s is not None:
        skey = s[0]
        if d is None or skey < d[0]:
            yield _COPY, skey, s, None, None
            s = next(source, None)
        elif d[0] < skey:
            yield _EXTRA, d[0], None, d, None
            d = next(destination, None)
        else:
            action, reason = compare(s[source_entry], d)
            yield action, skey, s, d, reason
            s = next(source, None)
            d = next(destination, None)
    while d is not None:
        yield _EXTRA, d[0], None, d, None
        d = next(destination, None)


def diff(
    source: Iterable[ListingEntry], destination: Iterable[ListingEntry]
) -> Iterator[DiffEntry]:
    """Merge-join two key-sorted listings into one decision per key.

    Every source key gets exactly one of ``COPY``, ``SKIP``, ``VERIFY`` or
    ``CONFLICT`` (see [compare][carmigrate.migrate.compare]); every key only
    at the destination gets ``EXTRA``. Output is in ascending key order.
    Memory is constant.

    Raises:
        PlanError: Either listing is not strictly ascending (raised when the
            offending entry is reached).
    """
    src = ((e[0], e) for e in check_sorted(source, what="the source listing"))
    dst = iter(check_sorted(destination, what="the destination listing"))
    for action, key, s, d, reason in join(src, dst):
        yield DiffEntry(action, key, None if s is None else s[1], d, reason)
