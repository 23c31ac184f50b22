"""Packing policies: conservation, constraints, and the no-holes property."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from carmigrate.aggregate import (
    POLICIES,
    SPADE_PAYLOAD_WINDOW,
    PackingConstraints,
    PackItem,
    pack,
)
from carmigrate.aggregate.lowlevel import index_start
from carmigrate.errors import AggregateError

DEAL = 1 << 20  # 1 MiB deals keep examples small; the index has 8 entries


@attrs.frozen
class P:
    root: bytes
    padded_size: int


def item(i: int, size: int, **kw: object) -> PackItem:
    return PackItem(P(i.to_bytes(32, "big"), size), f"p{i}", **kw)  # type: ignore[arg-type]


items_st = st.lists(
    st.tuples(
        st.integers(min_value=7, max_value=18).map(lambda k: 1 << k),
        st.none() | st.sampled_from(["g1", "g2", "g3"]),
        st.sampled_from(["t1", "t2"]),
        st.floats(min_value=0, max_value=100),
    ),
    max_size=40,
).map(
    lambda rows: [
        # A group (the shards of one upload) belongs to one tenant.
        item(i, s, group=g, tenant=(g[-1] if g else t), received=r)
        for i, (s, g, t, r) in enumerate(rows)
    ]
)


def check_result(
    items: list[PackItem], c: PackingConstraints, policy: str, now: float
) -> None:
    res = pack(items, c, policy=policy, now=now)
    seen = [i.key for a in res.aggregates for i in a.items] + [
        i.key for i in res.leftover
    ]
    # Conservation: every item exactly once, emitted or left over.
    assert sorted(seen) == sorted(i.key for i in items)
    for agg in res.aggregates:
        built = agg.build()  # raises if the planned offsets are not reproducible
        assert built.deal_size == c.deal_size
        assert len(agg.pieces) <= c.piece_limit
        assert agg.reason in {"full", "deadline"}
        if c.isolate_tenants:
            assert len({i.tenant for i in agg.items}) <= 1
        for g in {i.group for i in agg.items} - {None}:
            assert all(i.group != g for i in res.leftover)
            assert all(
                i.group != g for o in res.aggregates if o is not agg for i in o.items
            )
        if agg.prepend:
            assert agg.offsets[0] == 0


@pytest.mark.parametrize("policy", sorted(POLICIES))
@given(items=items_st, isolate=st.booleans(), max_pieces=st.none() | st.integers(1, 8))
def test_policies_conserve_and_respect_constraints(
    policy: str, items: list[PackItem], isolate: bool, max_pieces: int | None
) -> None:
    """No piece is lost or duplicated; groups stay together; tenants stay apart;
    piece counts stay in bounds; every planned layout builds."""
    c = PackingConstraints(
        deal_size=DEAL, isolate_tenants=isolate, max_pieces=max_pieces, max_age=50
    )
    sizes: dict[str, list[int]] = {}
    for it in items:
        if it.group:
            sizes.setdefault(it.group, []).append(it.size)
    impossible = any(
        len(s) > c.piece_limit or sum(s) > index_start(DEAL) for s in sizes.values()
    )
    if impossible:
        # A group that no empty aggregate can hold is refused, never split.
        with pytest.raises(AggregateError, match="cannot fit"):
            pack(items, c, policy=policy, now=120.0)
        return
    check_result(items, c, policy, now=120.0)


@given(
    st.lists(st.integers(min_value=7, max_value=17).map(lambda k: 1 << k), max_size=60)
)
def test_largest_first_leaves_no_alignment_holes(sizes: list[int]) -> None:
    """Without prepended pieces, largest_first never wastes space on alignment."""
    items = [item(i, s) for i, s in enumerate(sizes)]
    res = pack(
        items,
        PackingConstraints(deal_size=DEAL, max_age=0),
        policy="largest_first",
        now=1.0,
    )

    assert all(a.alignment_waste == 0 for a in res.aggregates)


def test_largest_first_fills_the_gap_after_a_prepended_piece() -> None:
    """A small prepended CAR is followed by small pieces, not by a large hole."""
    pre = P(b"\x07" * 32, 128)
    # 128 + 128 + 256 + ... + 2**17 == 2**18: the small ones exactly fill the gap.
    small = [item(k, 1 << k) for k in range(7, 18)]
    c = PackingConstraints(deal_size=1 << 24, prepend=(pre,), max_age=0)
    items = [item(99, 1 << 18), *small]

    res = pack(items, c, policy="largest_first", now=1.0)

    (agg,) = res.aggregates
    assert agg.offsets[0] == 0
    assert agg.alignment_waste == 0
    assert agg.items[-1].key == "p99"
    agg.build()


def test_largest_first_hole_after_prepend_is_only_what_is_unavoidable() -> None:
    """With too few small pieces, they still go into the gap before the big one."""
    pre = P(b"\x07" * 32, 128)
    items = [item(0, 1 << 18), item(1, 128), item(2, 256), item(3, 512)]
    c = PackingConstraints(deal_size=DEAL, prepend=(pre,), max_age=0)

    (agg,) = pack(items, c, policy="largest_first", now=1.0).aggregates

    assert agg.offsets == (0, 128, 256, 512, 1 << 18)
    assert agg.alignment_waste == (1 << 18) - 1024


def test_smallest_first_leaves_holes_largest_first_does_not() -> None:
    """The deployed order loses space to alignment where ours loses none."""
    sizes = [128, 1 << 18, 256, 1 << 17, 512]
    items = [item(i, s) for i, s in enumerate(sizes)]
    c = PackingConstraints(deal_size=DEAL, max_age=0)

    small = pack(items, c, policy="smallest_first", now=1.0)
    large = pack(items, c, policy="largest_first", now=1.0)

    assert sum(a.alignment_waste for a in small.aggregates) > 0
    assert sum(a.alignment_waste for a in large.aggregates) == 0


def test_window_and_deadline() -> None:
    """Below the payload window nothing is emitted until the oldest piece is too old."""
    items = [item(0, 1 << 12, received=10.0), item(1, 1 << 12, received=20.0)]
    c = PackingConstraints(deal_size=DEAL, max_age=30.0)

    early = pack(items, c, now=35.0)
    late = pack(items, c, now=40.0)

    assert early.aggregates == ()
    assert len(early.leftover) == 2
    (agg,) = late.aggregates
    assert agg.reason == "deadline"
    assert agg.padding_cost == DEAL - 2 * (1 << 12)


def test_spade_window_is_the_default_for_32_gib() -> None:
    """The default window for 32 GiB deals is Spade's exact inclusive range."""
    assert (
        PackingConstraints().window
        == SPADE_PAYLOAD_WINDOW
        == (17045651457, 34091302912)
    )


def test_errors() -> None:
    """Unknown policies, duplicate keys and impossible pieces are refused clearly."""
    c = PackingConstraints(deal_size=DEAL)
    with pytest.raises(AggregateError, match="unknown packing policy"):
        pack([], c, policy="random")
    with pytest.raises(AggregateError, match="duplicate"):
        pack([item(1, 128), item(1, 128)], c)
    for policy in POLICIES:
        with pytest.raises(AggregateError, match="cannot fit"):
            pack([item(1, DEAL)], c, policy=policy)
    with pytest.raises(AggregateError, match="span several tenants"):
        pack(
            [item(1, 128, group="g", tenant="a"), item(2, 128, group="g", tenant="b")],
            PackingConstraints(deal_size=DEAL, isolate_tenants=True),
        )
    with pytest.raises(AggregateError, match="max_pieces"):
        PackingConstraints(deal_size=DEAL, max_pieces=0)
