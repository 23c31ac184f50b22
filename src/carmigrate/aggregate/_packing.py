"""Packing policies: which pieces go into which aggregate, in what order.

Every policy is a pure function ``(items, constraints, now) -> PackResult``.
Nothing is hashed here: a policy only decides membership and layout order;
[PlannedAggregate.build][carmigrate.aggregate.PlannedAggregate.build] turns a
decision into an [Aggregate][carmigrate.aggregate.Aggregate].

Policies:

- ``in_order`` — data-segment's: place pieces in the order given; when the
  next one does not fit, close the aggregate and start a new one.
- ``smallest_first`` — the deployed w3up aggregator's: sort by padded size,
  smallest first, place in that order and stop at the first piece that no
  longer fits. Every larger piece then lands on a larger alignment boundary,
  leaving holes.
- ``largest_first`` — carmigrate's: biggest pieces first, so every offset is
  already aligned and no hole opens; the space left is filled best-fit with
  the largest piece that still fits, and the gap after prepended pieces is
  filled with small pieces before any large one is placed.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import attrs

from carmigrate import _html
from carmigrate.aggregate._builder import (
    Aggregate,
    AggregateBuilder,
    Piece,
    check_deal_size,
)
from carmigrate.aggregate._index import index_start, max_entries
from carmigrate.errors import AggregateError

__all__ = [
    "POLICIES",
    "SPADE_DEAL_SIZE",
    "SPADE_PAYLOAD_WINDOW",
    "PackItem",
    "PackResult",
    "PackingConstraints",
    "PlannedAggregate",
    "Policy",
    "in_order",
    "largest_first",
    "pack",
    "smallest_first",
]

SPADE_DEAL_SIZE: Final = 1 << 35
"""32 GiB: the padded deal size Spade takes."""

SPADE_PAYLOAD_WINDOW: Final = (1 + 127 * (1 << 27), 127 * (1 << 28))
"""Spade's inclusive window for an aggregate's unpadded size, in bytes."""


@attrs.frozen
class PackItem:
    """A piece offered for packing, with what the constraints need to know.

    Attributes:
        piece: The piece (its root and padded size).
        key: A unique name for the piece (for example its PieceCID string);
            used to report placements and deduplicate.
        payload_size: The payload's real size in bytes, if known (for
            payload-fill statistics; defaults to the unpadded piece size).
        group: Pieces sharing a group must land in the same aggregate (the
            shards of one upload). ``None`` for no constraint.
        tenant: Pieces of different tenants never share an aggregate when
            ``PackingConstraints.isolate_tenants`` is set.
        received: When the piece was offered (seconds, any epoch), for the
            age deadline and wait statistics.
        priority: Higher first within equal sizes (re-buffered pieces of a
            rejected aggregate get a higher priority).
    """

    piece: Piece
    key: str
    payload_size: int | None = None
    group: str | None = None
    tenant: str | None = None
    received: float = 0.0
    priority: int = 0

    @property
    def size(self) -> int:
        """The padded piece size."""
        return self.piece.padded_size

    @property
    def payload(self) -> int:
        """Payload bytes: the real size if known, else the unpadded piece size."""
        if self.payload_size is not None:
            return self.payload_size
        return self.size // 128 * 127


def _default_window(deal_size: int) -> tuple[int, int]:
    cap = deal_size // 128 * 127
    return (cap // 2 + 1, cap)


@attrs.frozen
class PackingConstraints:
    """The rules an aggregate must satisfy.

    Attributes:
        deal_size: Padded deal size (power of two).
        payload_window: Inclusive bounds on an aggregate's unpadded size (the
            sum of its pieces' unpadded sizes) that a dealer accepts;
            reported on each aggregate as ``in_window``. Default: Spade's
            window for 32 GiB deals, and likewise "more than half of the
            deal's unpadded capacity" for other sizes.
        max_pieces: Upper bound on pieces per aggregate (besides the index's
            own limit), ``None`` for none.
        prepend: Pieces placed first in every aggregate, in this order (for
            example a small valid CAR, as storage providers read the start
            of an aggregate as a CAR).
        isolate_tenants: Never mix pieces of different tenants.
        max_age: Seconds after which the oldest waiting piece forces a
            partly full aggregate out (a deadline flush); ``None`` for never.
    """

    deal_size: int = SPADE_DEAL_SIZE
    payload_window: tuple[int, int] | None = None
    max_pieces: int | None = None
    prepend: tuple[Piece, ...] = ()
    isolate_tenants: bool = False
    max_age: float | None = None

    def __attrs_post_init__(self) -> None:
        check_deal_size(self.deal_size)
        if self.max_pieces is not None and self.max_pieces < 1:
            msg = f"max_pieces must be at least 1, got {self.max_pieces}"
            raise AggregateError(msg)

    @property
    def window(self) -> tuple[int, int]:
        """The payload window in force (explicit, or the default for the size)."""
        if self.payload_window is not None:
            return self.payload_window
        if self.deal_size == SPADE_DEAL_SIZE:
            return SPADE_PAYLOAD_WINDOW
        return _default_window(self.deal_size)

    @property
    def piece_limit(self) -> int:
        """Most pieces an aggregate may hold, prepended pieces included."""
        limit = max_entries(self.deal_size)
        return limit if self.max_pieces is None else min(limit, self.max_pieces)


@attrs.frozen
class PlannedAggregate:
    """A packing decision: which items, in which layout order, and its cost.

    Attributes:
        deal_size: Padded deal size.
        prepend: Prepended pieces, laid out first.
        items: The packed items, in layout order (after the prepends).
        offsets: Padded offset of every prepended piece and item, in order.
        reason: ``"full"`` (no waiting piece fits any more) or
            ``"deadline"`` (flushed because its oldest piece reached the age
            deadline).
        window: The payload window of the constraints it was packed under.
    """

    deal_size: int
    prepend: tuple[Piece, ...]
    items: tuple[PackItem, ...]
    offsets: tuple[int, ...]
    reason: str
    window: tuple[int, int]

    @property
    def pieces(self) -> tuple[Piece, ...]:
        """All pieces in layout order, prepended ones first."""
        return self.prepend + tuple(i.piece for i in self.items)

    @property
    def used(self) -> int:
        """Padded bytes covered by pieces."""
        return sum(p.padded_size for p in self.pieces)

    @property
    def data_end(self) -> int:
        """Padded offset just past the last piece."""
        sizes = [p.padded_size for p in self.pieces]
        return self.offsets[-1] + sizes[-1] if sizes else 0

    @property
    def alignment_waste(self) -> int:
        """Padded bytes of holes between pieces (lost to alignment)."""
        return self.data_end - self.used

    @property
    def unpadded_size(self) -> int:
        """Sum of the pieces' unpadded sizes (what the payload window bounds)."""
        return self.used // 128 * 127

    @property
    def payload(self) -> int:
        """Payload bytes of the items (real sizes where known) and prepends."""
        pre = sum(p.padded_size // 128 * 127 for p in self.prepend)
        return pre + sum(i.payload for i in self.items)

    @property
    def in_window(self) -> bool:
        """Whether the unpadded size lies in the constraints' payload window.

        Full aggregates practically always do; a deadline flush may not, and
        a dealer such as Spade refuses those.
        """
        lo, hi = self.window
        return lo <= self.unpadded_size <= hi

    @property
    def padding_cost(self) -> int:
        """Padded bytes of the deal not covered by pieces (index included)."""
        return self.deal_size - self.used

    def check(self) -> AggregateBuilder:
        """Place the pieces in layout order, without hashing anything.

        Returns:
            The builder holding the placements.

        Raises:
            AggregateError: If the pieces do not fit, or the layout does not
                reproduce the planned offsets (a bug in a policy).
        """
        if len(self.offsets) != len(self.pieces):
            msg = f"{len(self.pieces)} pieces but {len(self.offsets)} planned offsets"
            raise AggregateError(msg)
        builder = AggregateBuilder(self.deal_size)
        for piece, offset in zip(self.pieces, self.offsets, strict=True):
            placed = builder.add(piece)
            if placed.offset != offset:
                msg = (
                    f"planned offset {offset} but the builder placed at {placed.offset}"
                )
                raise AggregateError(msg)
        return builder

    def build(self) -> Aggregate:
        """Place the pieces in layout order and compute the aggregate.

        Raises:
            AggregateError: As [check][carmigrate.aggregate.PlannedAggregate.check].
        """
        return self.check().build()


@attrs.frozen
class PackResult:
    """What a policy decided.

    Attributes:
        aggregates: The aggregates to build, in order.
        leftover: Items still waiting (not enough for a full aggregate yet).
    """

    aggregates: tuple[PlannedAggregate, ...]
    leftover: tuple[PackItem, ...]

    def _repr_html_(self) -> str:
        """Jupyter's view: each planned aggregate's fill and cost, then what waits."""
        h = _html
        waiting = sum(i.size for i in self.leftover)
        aggregates = (
            (
                n,
                a.reason,
                len(a.pieces),
                h.nbytes(a.deal_size),
                h.nbytes(a.used),
                h.nbytes(a.payload),
                h.nbytes(a.alignment_waste),
                h.nbytes(a.padding_cost),
                h.yes_no(a.in_window),
                ", ".join(sorted({i.tenant for i in a.items if i.tenant is not None})),
            )
            for n, a in enumerate(self.aggregates[: h.MAX_ROWS])
        )
        leftover = (
            (h.code(i.key), h.nbytes(i.size), i.tenant or "", i.group or "")
            for i in self.leftover[: h.MAX_ROWS]
        )
        parts = [
            h.table(
                (
                    "#",
                    "reason",
                    "pieces",
                    "deal size",
                    "covered",
                    "payload",
                    "alignment holes",
                    "padding",
                    "in window",
                    "tenants",
                ),
                aggregates,
                total=len(self.aggregates),
            )
            if self.aggregates
            else h.Markup("<p>No aggregate yet.</p>"),
        ]
        if self.leftover:
            parts += [
                h.heading(f"Waiting: {h.count(len(self.leftover), 'piece')}"),
                h.table(
                    ("key", "padded size", "tenant", "group"),
                    leftover,
                    total=len(self.leftover),
                ),
            ]
        return h.block(
            h.Markup(
                f"<b>Packing</b>: {h.count(len(self.aggregates), 'aggregate')}, "
                f"{h.count(len(self.leftover), 'piece')} waiting "
                f"({h.nbytes(waiting)} padded); not built yet "
                "(<code>build()</code> computes each PieceCID)"
            ),
            *parts,
        )


Policy = Callable[[Sequence[PackItem], PackingConstraints, float | None], PackResult]
"""A packing policy: ``(items, constraints, now) -> PackResult``; pure."""


class _Layout:
    """One aggregate being filled: in-order placement with the deal's limits."""

    def __init__(self, c: PackingConstraints) -> None:
        self.c = c
        self.limit = index_start(c.deal_size)
        self.max_count = c.piece_limit
        self.end = 0
        self.count = 0
        self.offsets: list[int] = []
        self.items: list[PackItem] = []
        self.used = 0
        for p in c.prepend:
            if not self._place(p.padded_size):
                msg = "the prepended pieces alone do not fit the deal"
                raise AggregateError(msg)

    def _fits(self, size: int) -> int | None:
        offset = -(-self.end // size) * size
        if self.count + 1 > self.max_count or offset + size > self.limit:
            return None
        return offset

    def _place(self, size: int) -> bool:
        offset = self._fits(size)
        if offset is None:
            return False
        self.offsets.append(offset)
        self.end = offset + size
        self.count += 1
        self.used += size
        return True

    def try_add_group(self, items: Sequence[PackItem]) -> bool:
        """All of ``items`` (largest first) or none."""
        saved = (self.end, self.count, self.used, len(self.offsets))
        ordered = sorted(items, key=lambda i: -i.size)
        for it in ordered:
            if not self._place(it.size):
                self.end, self.count, self.used, n = saved
                del self.offsets[n:]
                return False
        self.items.extend(ordered)
        return True

    def add_all(self, items: Sequence[PackItem]) -> None:
        """Place ``items`` in this order, each at the next aligned offset.

        Raises:
            AggregateError: If they do not all fit (a bug in the policy).
        """
        end, count, used = self.end, self.count, self.used
        offsets = self.offsets
        for it in items:
            size = it.piece.padded_size
            offset = -(-end // size) * size
            offsets.append(offset)
            end = offset + size
            used += size
        count += len(items)
        if end > self.limit or count > self.max_count:  # pragma: no cover
            msg = "internal error: the pieces chosen do not fit the aggregate"
            raise AggregateError(msg)
        self.end, self.count, self.used = end, count, used
        self.items.extend(items)

    def plan(self, reason: str) -> PlannedAggregate:
        return PlannedAggregate(
            self.c.deal_size,
            self.c.prepend,
            tuple(self.items),
            tuple(self.offsets),
            reason,
            self.c.window,
        )


def _units(items: Iterable[PackItem]) -> list[list[PackItem]]:
    """Group items: a unit is one ungrouped item or all items of one group."""
    groups: dict[str, list[PackItem]] = defaultdict(list)
    units: list[list[PackItem]] = []
    for it in items:
        if it.group is None:
            units.append([it])
        else:
            if it.group not in groups:
                units.append(groups[it.group])
            groups[it.group].append(it)
    return units


def _partition(
    items: Sequence[PackItem], c: PackingConstraints
) -> list[list[PackItem]]:
    if not c.isolate_tenants:
        return [list(items)]
    by: dict[str | None, list[PackItem]] = defaultdict(list)
    for it in items:
        by[it.tenant].append(it)
    return list(by.values())


def _deadline_due(
    units: Sequence[Sequence[PackItem]], c: PackingConstraints, now: float | None
) -> bool:
    if c.max_age is None or now is None or not units:
        return False
    oldest = min(i.received for u in units for i in u)
    return now - oldest >= c.max_age


def _sequential(
    items: Sequence[PackItem],
    c: PackingConstraints,
    now: float | None,
    order: Callable[[list[list[PackItem]]], list[list[PackItem]]],
    *,
    stop_at_first_misfit: bool,
) -> PackResult:
    out: list[PlannedAggregate] = []
    left: list[PackItem] = []
    for part in _partition(items, c):
        units = order(_units(part))
        while units:
            layout = _Layout(c)
            rest: list[list[PackItem]] = []
            closed = False
            for k, u in enumerate(units):
                if closed:
                    rest.append(u)
                    continue
                ok = layout.try_add_group(u)
                if not ok:
                    if not layout.items:
                        msg = f"piece {u[0].key} cannot fit even an empty aggregate"
                        raise AggregateError(msg)
                    rest.append(u)
                    if stop_at_first_misfit:
                        closed = True
                        rest.extend(units[k + 1 :])
                        break
            if closed:
                out.append(layout.plan("full"))
                units = rest
                continue
            if _deadline_due(units, c, now):
                out.append(layout.plan("deadline"))
                units = rest
                continue
            left.extend(i for u in units for i in u)
            break
    return PackResult(tuple(out), tuple(left))


def in_order(
    items: Sequence[PackItem], constraints: PackingConstraints, now: float | None = None
) -> PackResult:
    """data-segment's policy: place in the order given; close when one does not fit.

    An aggregate is emitted when its next piece does not fit; a tail that
    fits entirely waits until its oldest piece reaches the age deadline.

    Raises:
        AggregateError: If a piece cannot fit even an empty aggregate.
    """
    return _sequential(items, constraints, now, lambda u: u, stop_at_first_misfit=True)


def smallest_first(
    items: Sequence[PackItem], constraints: PackingConstraints, now: float | None = None
) -> PackResult:
    """The deployed w3up aggregator's policy: ascending padded size, in that order.

    Pieces are sorted by padded size (smallest first, higher priority first
    within a size) and placed in that order until one does not fit.

    Raises:
        AggregateError: If a piece cannot fit even an empty aggregate.
    """

    def order(units: list[list[PackItem]]) -> list[list[PackItem]]:
        return sorted(
            units, key=lambda u: (max(i.size for i in u), -max(i.priority for i in u))
        )

    return _sequential(items, constraints, now, order, stop_at_first_misfit=True)


def largest_first(
    items: Sequence[PackItem], constraints: PackingConstraints, now: float | None = None
) -> PackResult:
    """Carmigrate's policy: no alignment holes, the rest filled best-fit.

    Units (single pieces, or whole groups) are taken largest first; when the
    largest remaining does not fit, the largest one that still fits goes in.
    Since padded sizes are powers of two, placing them in descending order
    keeps every offset aligned, so no space is lost to alignment; after
    prepended pieces, the hole up to the next large boundary is filled with
    small pieces first. An aggregate is emitted when no waiting piece fits
    any more, or when its oldest piece reaches the age deadline.

    Raises:
        AggregateError: If a piece cannot fit even an empty aggregate.
    """
    out: list[PlannedAggregate] = []
    left: list[PackItem] = []
    for part in _partition(items, constraints):
        emitted, rest = _fill_largest_first(part, constraints, now)
        out.extend(emitted)
        left.extend(rest)
    return PackResult(tuple(out), tuple(left))


def _size(item: PackItem) -> int:
    return item.piece.padded_size


def _largest_first_order(item: PackItem) -> int:
    return -item.piece.padded_size


class _Buckets:
    """Single (ungrouped) items bucketed by padded size, in the order they are taken.

    A bucket is sorted so that its last entry is the next one to take: the
    highest priority, and within it the earliest offered.
    """

    def __init__(self, singles: Iterable[PackItem]) -> None:
        # (priority, -arrival, item); arrivals are unique, so items are never
        # compared.
        self.by_size: dict[int, list[tuple[int, int, PackItem]]] = defaultdict(list)
        n = 0
        for n, it in enumerate(singles, 1):
            self.by_size[it.piece.padded_size].append((it.priority, -n, it))
        self._arrival = itertools.count(-n - 1, -1)
        self._count = 0
        for bucket in self.by_size.values():
            bucket.sort()
            self._count += len(bucket)
        # Every size ever bucketed, largest first: a few dozen powers of two at
        # most, so finding the largest that fits is a short scan, not a sort.
        self._sizes = sorted(self.by_size, reverse=True)

    def largest_fitting(self, room: int) -> int | None:
        """The largest size with a waiting item that is at most ``room``."""
        by_size = self.by_size
        for s in self._sizes:
            if s <= room and by_size[s]:
                return s
        return None

    def waiting(self, size: int) -> int:
        """How many items of ``size`` wait."""
        return len(self.by_size[size])

    def take(self, size: int, n: int = 1) -> list[PackItem]:
        """The next ``n`` items of ``size``, in order."""
        bucket = self.by_size[size]
        taken = bucket[-n:]
        del bucket[-n:]
        self._count -= len(taken)
        return [e[2] for e in reversed(taken)]

    def put(self, item: PackItem) -> None:
        """Offer ``item`` again, after the waiting items of its priority."""
        if _size(item) not in self.by_size:
            self._sizes = sorted([*self._sizes, _size(item)], reverse=True)
        entry = (item.priority, next(self._arrival), item)
        bisect.insort(self.by_size[_size(item)], entry)
        self._count += 1

    def first(self) -> PackItem:
        """The first waiting item (for error messages)."""
        return next(b[-1][2] for b in self.by_size.values() if b)

    def __bool__(self) -> bool:
        return self._count > 0


class _Urgent:
    """Single items past half their deadline, in the order they are tried.

    Kept per padded size, each size in order, so taking every item that fits
    (one pass in order, as a scan of a list would) costs a few steps per size
    instead of a scan of everything waiting.
    """

    def __init__(self, items: Iterable[PackItem]) -> None:
        self.by_size: dict[int, deque[tuple[int, PackItem]]] = {}
        self._position = itertools.count()
        self._count = 0
        for it in items:
            self.append(it)

    def append(self, item: PackItem) -> None:
        """Add ``item`` after every waiting one."""
        queue = self.by_size.setdefault(_size(item), deque())
        queue.append((next(self._position), item))
        self._count += 1

    def first(self) -> PackItem:
        """The first waiting item (for error messages)."""
        return min(q[0] for q in self.by_size.values() if q)[1]

    def take_into(self, sel: _Selection) -> None:
        """Take, in order, every item that still fits ``sel`` when its turn comes.

        Room only shrinks during the pass, so an item passed over never fits
        later: the next item taken is always the first one (in order) that
        fits now.
        """
        while sel.count < sel.max_count:
            room = sel.limit - sel.used
            heads = sorted(
                (q[0][0], s) for s, q in self.by_size.items() if q and s <= room
            )
            if not heads:
                return
            size = heads[0][1]
            # Other sizes only drop out as room shrinks: until this size's next
            # item comes after the first of the others, it is the one to take.
            bound = heads[1][0] if len(heads) > 1 else math.inf
            queue = self.by_size[size]
            n = 0
            most = min(sel.max_count - sel.count, room // size)
            while n < most and queue and queue[0][0] < bound:
                sel.urgent.append(queue.popleft()[1])
                n += 1
            sel.count += n
            sel.used += n * size
            self._count -= n

    def __bool__(self) -> bool:
        return self._count > 0


class _Selection:
    """Units chosen for one aggregate, checked by padded sum and count.

    Chosen in this order: urgent singles, groups, other singles.
    """

    def __init__(self, layout: _Layout) -> None:
        self.limit = layout.limit
        self.max_count = layout.max_count
        self.used = layout.end
        self.count = layout.count
        self.urgent: list[PackItem] = []
        self.groups: list[list[PackItem]] = []
        self.singles: list[PackItem] = []

    def take_group(self, group: list[PackItem], size: int) -> bool:
        """Choose ``group`` (``size``: its padded sum) if it fits."""
        if self.used + size > self.limit or self.count + len(group) > self.max_count:
            return False
        self.used += size
        self.count += len(group)
        self.groups.append(group)
        return True

    def take_singles(self, singles: _Buckets) -> None:
        """Choose the largest waiting singles that fit, until none does.

        The largest size that fits stays the largest while it still fits, so
        all the items of one size that fit are taken at once.
        """
        while self.count < self.max_count:
            room = self.limit - self.used
            size = singles.largest_fitting(room)
            if size is None:
                return
            n = min(singles.waiting(size), room // size, self.max_count - self.count)
            self.singles += singles.take(size, n)
            self.count += n
            self.used += n * size

    def members(self) -> list[PackItem]:
        """Every chosen item, in the order chosen."""
        return [*self.urgent, *(i for g in self.groups for i in g), *self.singles]

    def units(self) -> list[list[PackItem]]:
        """Every chosen unit (a single item, or a group), in the order chosen."""
        return [
            *([i] for i in self.urgent),
            *self.groups,
            *([i] for i in self.singles),
        ]


class _Buddy:
    """Free space of one deal as power-of-two blocks (a buddy allocator).

    ``alloc`` takes the lowest-addressed free block that can hold the request
    and splits it, so allocating pieces largest first packs them
    contiguously from the lowest free address, and smaller pieces fill the
    aligned gaps that prepended pieces leave below larger ones.
    """

    def __init__(self, deal_size: int, reserved: Iterable[tuple[int, int]]) -> None:
        self.free: dict[int, list[int]] = defaultdict(list)
        self.free[deal_size] = [0]
        for offset, size in reserved:
            self._reserve(offset, size)

    def _reserve(self, offset: int, size: int) -> None:
        block = size
        while not (
            self.free.get(block) and (offset & ~(block - 1)) in self.free[block]
        ):
            block <<= 1
            if block > max(self.free):
                msg = f"cannot reserve [{offset}, {offset + size}): not free"
                raise AggregateError(msg)
        start = offset & ~(block - 1)
        self.free[block].remove(start)
        heapq.heapify(self.free[block])
        while block > size:
            block >>= 1
            # Keep the half holding `offset`; free the other one.
            other = start + block if offset < start + block else start
            start = start if offset < start + block else start + block
            heapq.heappush(self.free[block], other)

    def largest_free(self) -> int:
        return max((s for s, h in self.free.items() if h), default=0)

    def alloc(self, size: int) -> int | None:
        # First fit by address: the lowest free block that can hold `size`.
        fits = [(h[0], s) for s, h in self.free.items() if h and s >= size]
        if not fits:
            return None
        start, block = min(fits)
        heapq.heappop(self.free[block])
        while block > size:
            block >>= 1
            heapq.heappush(self.free[block], start + block)
        return start


def _fill_largest_first(
    items: Sequence[PackItem], c: PackingConstraints, now: float | None
) -> tuple[list[PlannedAggregate], list[PackItem]]:
    # Units: single items, and groups of more than one item (in order of
    # their first item); a group of one is a single item.
    by_group: dict[str, list[PackItem]] = {}
    for it in items:
        if it.group is not None:
            by_group.setdefault(it.group, []).append(it)
    alone = {g for g, members in by_group.items() if len(members) == 1}
    singles_in = [it for it in items if it.group is None or it.group in alone]
    # Pieces past half their age deadline are chosen first, so small pieces
    # are not starved by a stream of large ones. Membership is decided before
    # layout, so choosing them first costs no alignment.
    cut = None if c.max_age is None or now is None else now - c.max_age / 2

    def is_urgent(u: list[PackItem]) -> bool:
        return cut is not None and len(u) == 1 and u[0].received <= cut

    if cut is None:
        urgent = _Urgent(())
        singles = _Buckets(singles_in)
    else:
        urgent = _Urgent(
            sorted(
                (it for it in singles_in if it.received <= cut),
                key=_largest_first_order,
            )
        )
        singles = _Buckets(it for it in singles_in if it.received > cut)
    groups = sorted(
        (
            (members, sum(_size(i) for i in members))
            for members in by_group.values()
            if len(members) > 1
        ),
        key=lambda g: (-max(_size(i) for i in g[0]), -g[1]),
    )
    out: list[PlannedAggregate] = []
    while singles or groups or urgent:
        layout = _Layout(c)
        # 1. Choose members by padded sum and count: exact when nothing is
        #    prepended, since pieces laid out largest first leave no holes.
        sel = _Selection(layout)
        urgent.take_into(sel)
        groups = [g for g in groups if not sel.take_group(*g)]
        sel.take_singles(singles)
        if c.prepend:
            placed = _place_after_prepend(
                c, layout, sel, singles, groups, urgent, is_urgent
            )
        else:
            # 2. Nothing prepended: laid out largest first, every member lands
            #    at an aligned offset right after the previous one, so all of
            #    them fit (their padded sum does), in the order a buddy
            #    allocator would give; and step 1 left no single that fits.
            placed = sorted(sel.members(), key=_largest_first_order)
        if not placed:
            if groups:
                key = groups[0][0][0].key
            else:
                key = (urgent.first() if urgent else singles.first()).key
            msg = f"piece or group {key} cannot fit even an empty aggregate"
            raise AggregateError(msg)
        layout.add_all(placed)
        if singles or groups or urgent:
            # As full as the waiting pieces allow.
            out.append(layout.plan("full"))
            continue
        # Everything waiting fits in this one aggregate: wait, unless too old.
        if _deadline_due([layout.items], c, now):
            out.append(layout.plan("deadline"))
            return out, []
        return out, list(layout.items)
    return out, []


def _aligned_blocks(end: int) -> list[tuple[int, int]]:
    """``[0, end)`` as aligned power-of-two blocks ``(offset, size)``, largest first."""
    blocks = []
    start = 0
    while start < end:
        size = 1 << (end - start).bit_length() - 1
        if start:
            size = min(size, start & -start)
        blocks.append((start, size))
        start += size
    return blocks


def _place_after_prepend(
    c: PackingConstraints,
    layout: _Layout,
    sel: _Selection,
    singles: _Buckets,
    groups: list[tuple[list[PackItem], int]],
    urgent: _Urgent,
    is_urgent: Callable[[list[PackItem]], bool],
) -> list[PackItem]:
    """Steps 2 and 3 of ``largest_first`` with prepended pieces: blocks for all.

    Returns:
        The members placed, in layout order (by the address of their block).
        Units that did not fit go back to ``singles``, ``groups`` or
        ``urgent``.
    """
    # 2. Give every member an aligned block, largest first; a unit that
    #    does not fit (only possible after prepended pieces) waits.
    #    Everything below the prepended pieces' end is taken: pieces are laid
    #    out in order after them, so a hole between two of them stays empty.
    reserved = _aligned_blocks(layout.end)
    reserved.append((layout.limit, c.deal_size - layout.limit))
    units = sel.units()
    while True:
        buddy = _Buddy(c.deal_size, reserved)
        owner = {id(i): u for u in units for i in u}
        chosen: list[tuple[int, PackItem]] = []
        misfits: list[list[PackItem]] = []
        for it in sorted((i for u in units for i in u), key=_largest_first_order):
            unit = owner[id(it)]
            if any(unit is m for m in misfits):
                continue
            off = buddy.alloc(_size(it))
            if off is None:
                misfits.append(unit)
            else:
                chosen.append((off, it))
        if not misfits:
            break
        units = [u for u in units if not any(u is m for m in misfits)]
        for m in misfits:
            if len(m) > 1:
                groups.append((m, sum(_size(i) for i in m)))
            elif is_urgent(m):
                urgent.append(m[0])
            else:
                singles.put(m[0])
    # 3. Fill what is still free with the largest singles that fit.
    count = layout.count + len(chosen)
    while count < layout.max_count:
        size = singles.largest_fitting(buddy.largest_free())
        if size is None:
            break
        off = buddy.alloc(size)
        assert off is not None  # a block of at least `size` is free
        chosen.append((off, singles.take(size)[0]))
        count += 1
    # Lay out by address: in-order placement then lands each piece at or
    # before its block, so everything chosen fits.
    chosen.sort(key=lambda t: t[0])
    return [it for _, it in chosen]


POLICIES: Final[Mapping[str, Policy]] = {
    "in_order": in_order,
    "largest_first": largest_first,
    "smallest_first": smallest_first,
}
"""The built-in policies by name."""


def pack(
    items: Sequence[PackItem],
    constraints: PackingConstraints,
    *,
    policy: str | Policy = "largest_first",
    now: float | None = None,
) -> PackResult:
    """Decide aggregates for ``items`` under ``constraints`` with a policy.

    Args:
        items: Pieces offered, each at most once (by ``key``).
        constraints: The rules aggregates must satisfy.
        policy: A name from [POLICIES][carmigrate.aggregate.POLICIES] or a
            policy function.
        now: The current time, for the age deadline.

    Raises:
        AggregateError: For an unknown policy, duplicate keys, or a piece
            that cannot fit even an empty aggregate.
    """
    keys = [i.key for i in items]
    if len(set(keys)) != len(keys):
        msg = "each item may be offered once: duplicate keys in the input"
        raise AggregateError(msg)
    if constraints.isolate_tenants:
        tenants: dict[str, set[str | None]] = defaultdict(set)
        for i in items:
            if i.group is not None:
                tenants[i.group].add(i.tenant)
        mixed = sorted(g for g, t in tenants.items() if len(t) > 1)
        if mixed:
            msg = f"groups {mixed} span several tenants, but tenants must stay apart"
            raise AggregateError(msg)
    if isinstance(policy, str):
        try:
            fn = POLICIES[policy]
        except KeyError:
            known = ", ".join(sorted(POLICIES))
            msg = f"unknown packing policy {policy!r}; known: {known}"
            raise AggregateError(msg) from None
    else:
        fn = policy
    return fn(items, constraints, now)
