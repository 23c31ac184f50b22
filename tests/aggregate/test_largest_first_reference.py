"""``largest_first`` against a naive reference: the same aggregates, exactly.

The reference below is the policy written as plainly as possible (lists
scanned and re-sorted at every pick, a buddy allocator as a set of free
blocks). The packer's fast paths (sizes taken in bulk, urgent pieces kept
per size, no allocator when nothing is prepended) must decide exactly what
it decides: the same members, layout order and offsets of every aggregate,
the same reasons, and the same pieces left waiting, in the same order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from carmigrate.aggregate import PackingConstraints, PackItem, pack
from carmigrate.aggregate.lowlevel import index_start
from carmigrate.errors import AggregateError

DEAL = 1 << 20  # 1 MiB deals: 8 index entries, pieces of 128 B to 256 KiB

Outcome = tuple[list[tuple[str, list[str], list[int]]], list[str]]


@attrs.frozen
class P:
    root: bytes
    padded_size: int


def item(i: int, size: int, **kw: object) -> PackItem:
    return PackItem(P(i.to_bytes(32, "big"), size), f"p{i}", **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------
# the reference


def _aligned(end: int, size: int) -> int:
    return -(-end // size) * size


class _RefBuddy:
    """Free blocks as a set of (start, size); first fit by address."""

    def __init__(self, deal: int, reserved: Sequence[tuple[int, int]]) -> None:
        self.free = {(0, deal)}
        for offset, size in reserved:
            start, block = next(
                (s, b) for s, b in self.free if s <= offset and offset + size <= s + b
            )
            self.free.remove((start, block))
            while block > size:
                block //= 2
                if offset < start + block:
                    self.free.add((start + block, block))
                else:
                    self.free.add((start, block))
                    start += block

    def largest(self) -> int:
        return max((b for _, b in self.free), default=0)

    def alloc(self, size: int) -> int | None:
        fits = [(s, b) for s, b in self.free if b >= size]
        if not fits:
            return None
        start, block = min(fits)
        self.free.remove((start, block))
        while block > size:
            block //= 2
            self.free.add((start + block, block))
        return start


class _RefSelection:
    def __init__(self, used: int, count: int, limit: int, most: int) -> None:
        self.used, self.count, self.limit, self.most = used, count, limit, most
        self.chosen: list[list[PackItem]] = []

    def take(self, u: list[PackItem]) -> bool:
        size = sum(i.size for i in u)
        if self.used + size > self.limit or self.count + len(u) > self.most:
            return False
        self.used += size
        self.count += len(u)
        self.chosen.append(u)
        return True


def _ref_part(
    items: Sequence[PackItem], c: PackingConstraints, now: float | None
) -> Outcome:
    limit, most = index_start(c.deal_size), c.piece_limit
    pre_offsets: list[int] = []
    end = 0
    for p in c.prepend:
        pre_offsets.append(_aligned(end, p.padded_size))
        end = pre_offsets[-1] + p.padded_size
    units: list[list[PackItem]] = []
    by_group: dict[str, list[PackItem]] = {}
    for it in items:
        if it.group is None:
            units.append([it])
        elif it.group in by_group:
            by_group[it.group].append(it)
        else:
            by_group[it.group] = [it]
            units.append(by_group[it.group])
    cut = None if c.max_age is None or now is None else now - c.max_age / 2

    def urgent_unit(u: list[PackItem]) -> bool:
        return cut is not None and len(u) == 1 and u[0].received <= cut

    seq = 0
    singles: list[tuple[int, int, int, PackItem]] = []  # (-size, -priority, seq)
    for u in units:
        if len(u) == 1 and not urgent_unit(u):
            singles.append((-u[0].size, -u[0].priority, seq, u[0]))
            seq += 1
    urgent = sorted((u[0] for u in units if urgent_unit(u)), key=lambda i: -i.size)
    groups = sorted(
        (u for u in units if len(u) > 1),
        key=lambda u: (-max(i.size for i in u), -sum(i.size for i in u)),
    )

    def best_single(room: int) -> tuple[int, int, int, PackItem] | None:
        fit = sorted(t for t in singles if -t[0] <= room)
        return fit[0] if fit else None

    out: list[tuple[str, list[str], list[int]]] = []
    while singles or groups or urgent:
        sel = _RefSelection(end, len(c.prepend), limit, most)
        take = sel.take
        urgent = [it for it in urgent if not take([it])]
        groups = [g for g in groups if not take(g)]
        while sel.count < most:
            best = best_single(limit - sel.used)
            if best is None:
                break
            singles.remove(best)
            take([best[3]])
        chosen_units = sel.chosen
        # below the prepended pieces' end, nothing more can be laid out
        reserved = [(o, 128) for o in range(0, end, 128)] + [
            (limit, c.deal_size - limit)
        ]
        while True:
            buddy = _RefBuddy(c.deal_size, reserved)
            placed: list[tuple[int, PackItem]] = []
            misfits: list[list[PackItem]] = []
            members = [(i, u) for u in chosen_units for i in u]
            for it, u in sorted(members, key=lambda t: -t[0].size):
                if any(u is m for m in misfits):
                    continue
                off = buddy.alloc(it.size)
                if off is None:
                    misfits.append(u)
                else:
                    placed.append((off, it))
            if not misfits:
                break
            chosen_units = [u for u in chosen_units if not any(u is m for m in misfits)]
            for m in misfits:
                if len(m) > 1:
                    groups.append(m)
                elif urgent_unit(m):
                    urgent.append(m[0])
                else:
                    singles.append((-m[0].size, -m[0].priority, seq, m[0]))
                    seq += 1
        count = len(c.prepend) + len(placed)
        while count < most:
            best = best_single(buddy.largest())
            if best is None:
                break
            singles.remove(best)
            off = buddy.alloc(best[3].size)
            assert off is not None
            placed.append((off, best[3]))
            count += 1
        if not placed:
            raise AggregateError("cannot fit even an empty aggregate")
        layout = sorted(placed, key=lambda t: t[0])
        offsets, at = list(pre_offsets), end
        for _, it in layout:
            offsets.append(_aligned(at, it.size))
            at = offsets[-1] + it.size
        agg = [it.key for _, it in layout]
        if singles or groups or urgent:
            out.append(("full", agg, offsets))
            continue
        due = (
            c.max_age is not None
            and now is not None
            and now - min(it.received for _, it in layout) >= c.max_age
        )
        if due:
            out.append(("deadline", agg, offsets))
            return out, []
        return out, agg
    return out, []


def reference(
    items: Sequence[PackItem], c: PackingConstraints, now: float | None
) -> Outcome:
    parts: dict[str | None, list[PackItem]] = {}
    for it in items:
        parts.setdefault(it.tenant if c.isolate_tenants else None, []).append(it)
    aggs: list[tuple[str, list[str], list[int]]] = []
    left: list[str] = []
    for part in parts.values():
        a, rest = _ref_part(part, c, now)
        aggs += a
        left += rest
    return aggs, left


def packed(
    items: Sequence[PackItem], c: PackingConstraints, now: float | None
) -> Outcome:
    res = pack(items, c, policy="largest_first", now=now)
    return (
        [(a.reason, [i.key for i in a.items], list(a.offsets)) for a in res.aggregates],
        [i.key for i in res.leftover],
    )


# ----------------------------------------------------------------------
# the comparisons


rows_st = st.lists(
    st.tuples(
        st.integers(min_value=7, max_value=18),  # padded size 2**k
        st.none() | st.sampled_from(["g1", "g2", "g3", "g4"]),
        st.sampled_from(["t1", "t2"]),
        st.floats(min_value=0, max_value=100),
        st.integers(min_value=0, max_value=2),
    ),
    max_size=60,
)


def build_items(
    rows: list[tuple[int, str | None, str, float, int]], groups: bool
) -> list[PackItem]:
    return [
        item(
            i,
            1 << k,
            group=g if groups else None,
            tenant=(g[-1] if g and groups else t),
            received=r,
            priority=pri,
        )
        for i, (k, g, t, r, pri) in enumerate(rows)
    ]


@settings(max_examples=300, deadline=None)
@given(
    rows=rows_st,
    groups=st.booleans(),
    isolate=st.booleans(),
    max_pieces=st.none() | st.integers(1, 8),
    prepend=st.lists(st.integers(min_value=7, max_value=16), max_size=2),
    max_age=st.none() | st.sampled_from([0.0, 30.0, 50.0, 200.0]),
    now=st.none() | st.floats(min_value=0, max_value=150),
)
def test_largest_first_decides_as_the_reference(
    rows: list[tuple[int, str | None, str, float, int]],
    groups: bool,
    isolate: bool,
    max_pieces: int | None,
    prepend: list[int],
    max_age: float | None,
    now: float | None,
) -> None:
    """Same members, order, offsets, reasons and leftovers as the naive policy."""
    assume(max_pieces is None or len(prepend) < max_pieces)
    items = build_items(rows, groups)
    c = PackingConstraints(
        deal_size=DEAL,
        isolate_tenants=isolate,
        max_pieces=max_pieces,
        max_age=max_age,
        prepend=tuple(
            P(b"\xee" * 31 + bytes([n]), 1 << k) for n, k in enumerate(prepend)
        ),
    )
    try:
        expected = reference(items, c, now)
    except AggregateError:
        with pytest.raises(AggregateError, match="cannot fit"):
            packed(items, c, now)
        return
    assert packed(items, c, now) == expected


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    deal=st.sampled_from([1 << 20, 1 << 24]),
    prepend=st.booleans(),
)
def test_largest_first_many_aggregates_as_the_reference(
    seed: int, deal: int, prepend: bool
) -> None:
    """Hundreds of pieces over many aggregates, about half of them urgent."""
    rng = random.Random(seed)
    top = (deal // 4).bit_length() - 8  # pieces up to a quarter of the deal
    items = [
        item(i, 128 << rng.randint(0, top), received=r)
        for i in range(rng.randint(200, 600))
        for r in [rng.random() * 100]
    ]
    c = PackingConstraints(
        deal_size=deal,
        max_age=100.0,
        prepend=(P(b"\xee" * 32, 1 << 9),) if prepend else (),
    )
    assert packed(items, c, 100.0) == reference(items, c, 100.0)
