"""The assembled aggregate bytes hash to the aggregate's commitment."""

from __future__ import annotations

import hashlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carmigrate.aggregate import (
    AggregateBuilder,
    iter_aggregate_bytes,
    open_aggregate_stream,
)
from carmigrate.commp import commp
from carmigrate.errors import AggregateError


def payload(seed: int, n: int) -> bytes:
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(seed.to_bytes(4, "big") + i.to_bytes(4, "big")).digest()
        i += 1
    return out[:n]


@settings(max_examples=15)
@given(st.lists(st.integers(min_value=1, max_value=40_000), min_size=1, max_size=6))
def test_commp_of_stream_equals_aggregate_root(sizes: list[int]) -> None:
    """commP over the streamed deal bytes is the aggregate CID, for any pieces."""
    datas = [payload(k, n) for k, n in enumerate(sizes)]
    pieces = [commp(d) for d in datas]
    builder = AggregateBuilder(1 << 18)
    for p in sorted(pieces, key=lambda p: -p.padded_size):
        if builder.estimate(p).fits:
            builder.add(p)
    agg = builder.build()
    by_root = {p.root: d for p, d in zip(pieces, datas, strict=True)}

    stream = open_aggregate_stream(agg, lambda pl: io.BytesIO(by_root[pl.root]))
    got = commp(stream)

    assert got.root == agg.root
    assert got.padded_size == agg.deal_size
    total = sum(
        len(c)
        for c in iter_aggregate_bytes(agg, lambda pl: io.BytesIO(by_root[pl.root]))
    )
    assert total == agg.deal_size // 128 * 127


def test_payload_longer_than_its_piece_is_an_error() -> None:
    """A payload that does not belong to the piece is refused, not truncated."""
    p = commp(payload(1, 100))
    b = AggregateBuilder(1 << 12)
    b.add(p)
    agg = b.build()

    stream = open_aggregate_stream(agg, lambda pl: io.BytesIO(bytes(1000)))
    with pytest.raises(AggregateError, match="longer than"):
        stream.read()
