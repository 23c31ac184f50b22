"""FRC-0058 builder, index and proofs: data-segment vectors and properties."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from carmigrate.aggregate import (
    AggregateBuilder,
    InclusionProof,
    ProofData,
    SegmentIndexEntry,
)
from carmigrate.aggregate.lowlevel import max_entries
from carmigrate.cid import CID
from carmigrate.cid.lowlevel import decode_varint
from carmigrate.errors import AggregateError, AggregateFullError

VECTORS = Path(__file__).parent.parent / "vectors" / "commp" / "aggregates.jsonl"
CASES = [json.loads(line) for line in VECTORS.read_text().splitlines() if line]


@attrs.frozen
class P:
    """A bare piece: root and padded size."""

    root: bytes
    padded_size: int


def parse_piece(spec: object) -> P:
    """A piece from a vector input: a v2 PieceCID, or {link: v1|v2, size}."""
    if isinstance(spec, str):
        digest = CID.decode(spec).digest
        _, pos = decode_varint(digest, 0)
        return P(digest[pos + 1 :], 32 << digest[pos])
    assert isinstance(spec, dict)
    cid = CID.decode(spec["link"])
    if cid.hash_code == 0x1012:
        return P(cid.digest, spec["size"])
    _, pos = decode_varint(cid.digest, 0)
    return P(cid.digest[pos + 1 :], spec["size"])


def pieces(case: dict) -> list[P]:
    return [parse_piece(p) for p in case["input"]["pieces"]]


@pytest.mark.parametrize(
    "case", [c for c in CASES if "error" not in c["expected"]], ids=lambda c: c["name"]
)
def test_vector_aggregates(case: dict) -> None:
    """Offsets, entries, commitments, index root and proofs equal data-segment's."""
    exp = case["expected"]
    builder = AggregateBuilder(case["input"]["dealSize"])
    for p in pieces(case):
        builder.add(p)

    agg = builder.build()

    assert agg.root.hex() == exp["aggregate"]["root"]
    assert agg.height == exp["height"]
    assert agg.max_entries == exp["index"]["maxEntries"]
    assert agg.index_start == exp["index"]["start"]
    assert agg.data_end == exp["dataEnd"]
    assert agg.index_level == exp["index"]["level"]
    assert CID.decode(exp["index"]["pieceCidV1"]).digest == agg.index_root
    for placement, ep in zip(agg.placements, exp["pieces"], strict=True):
        assert placement.offset == ep["offset"]
        assert placement.offset_unpadded == ep["offsetUnpadded"]
        assert placement.entry.to_bytes().hex() == ep["entry"]
        assert placement.entry.checksum.hex() == ep["checksum"]
        proof = agg.proof(placement.position)
        assert proof.to_json() == {
            "tree": {
                "offset": int(ep["proof"]["tree"]["offset"]),
                "path": ep["proof"]["tree"]["path"],
            },
            "index": {
                "offset": int(ep["proof"]["index"]["offset"]),
                "path": ep["proof"]["index"]["path"],
            },
        }
        assert proof.to_dag_cbor().hex() == ep["proofDagCbor"]
        assert InclusionProof.from_dag_cbor(bytes.fromhex(ep["proofDagCbor"])) == proof


@pytest.mark.parametrize(
    "case", [c for c in CASES if "error" in c["expected"]], ids=lambda c: c["name"]
)
def test_vector_failures_fail_at_the_same_piece(case: dict) -> None:
    """Sets data-segment refuses fail at the same piece, after the same placements."""
    exp = case["expected"]
    builder = AggregateBuilder(case["input"]["dealSize"])
    ps = pieces(case)
    with pytest.raises(AggregateFullError) as info:
        builder.extend(ps)

    assert info.value.failed_at == exp["error"]["failedAt"]
    assert [pl.offset for pl in builder.placements] == [
        p["offset"] for p in exp["placedBefore"]
    ]
    assert not builder.estimate(ps[info.value.failed_at]).fits


def test_max_entries_table() -> None:
    """Index sizes match commp-spec §7.2's table."""
    table = {
        1 << 19: 4,
        1 << 20: 8,
        1 << 30: 8192,
        1 << 34: 131072,
        1 << 35: 262144,
        1 << 36: 524288,
    }

    assert {d: max_entries(d) for d in table} == table


@pytest.mark.parametrize("size", [0, 256, 1000, 3 << 20, -512])
def test_bad_deal_sizes(size: int) -> None:
    """Deal sizes that are not powers of two >= 512 are refused."""
    with pytest.raises(AggregateError, match="deal size"):
        AggregateBuilder(size)


def test_bad_pieces_and_empty_build() -> None:
    """Malformed pieces and empty aggregates are AggregateErrors."""
    b = AggregateBuilder(1 << 20)
    with pytest.raises(AggregateError, match="power of two"):
        b.add(P(b"\0" * 32, 1000))
    with pytest.raises(AggregateError, match="32 bytes"):
        b.add(P(b"\0" * 31, 128))
    with pytest.raises(AggregateError, match="at least one"):
        b.build()


def test_index_entry_round_trip_and_rejections() -> None:
    """Entries parse back; a wrong checksum or misaligned offset is refused."""
    entry = SegmentIndexEntry(bytes(range(31)) + b"\x01", 1024, 512)
    raw = entry.to_bytes()

    assert SegmentIndexEntry.from_bytes(raw) == entry
    with pytest.raises(AggregateError, match="checksum"):
        SegmentIndexEntry.from_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(AggregateError, match="64 bytes"):
        SegmentIndexEntry.from_bytes(raw[:10])
    bad = SegmentIndexEntry(entry.root, 100, 512).to_bytes()
    with pytest.raises(AggregateError, match="multiple of 128"):
        SegmentIndexEntry.from_bytes(bad)


piece_sizes = st.integers(min_value=7, max_value=16).map(lambda k: 1 << k)
roots = st.binary(min_size=32, max_size=32).map(
    lambda b: b[:31] + bytes([b[31] & 0x3F])
)
piece_lists = st.lists(st.builds(P, roots, piece_sizes), min_size=1, max_size=12)


def build_prefix(deal: int, ps: list[P]):  # type: ignore[no-untyped-def]
    b = AggregateBuilder(deal)
    for p in ps:
        if not b.estimate(p).fits:
            break
        b.add(p)
    return b.build() if b.placements else None


@given(piece_lists, st.sampled_from([1 << 17, 1 << 20]))
def test_layout_and_proof_properties(ps: list[P], deal: int) -> None:
    """Pieces are aligned, disjoint, before the index; every proof verifies, and
    a proof for another piece, another position or another aggregate does not."""
    agg = build_prefix(deal, ps)
    if agg is None:
        return
    end = 0
    for pl in agg.placements:
        assert pl.offset % pl.size == 0
        assert pl.offset >= end
        end = pl.offset + pl.size
    assert end <= agg.index_start

    for pl in agg.placements:
        proof = agg.proof(pl.position)
        proof.verify(pl.root, pl.size, agg.root, agg.deal_size)
        assert proof.resolve(pl.root, pl.size) == (agg.root, agg.deal_size)
        forged_root = bytes([pl.root[0] ^ 1]) + pl.root[1:]
        with pytest.raises(AggregateError):
            proof.verify(forged_root, pl.size, agg.root, agg.deal_size)
        with pytest.raises(AggregateError):
            proof.verify(
                pl.root, pl.size, bytes([agg.root[0] ^ 1]) + agg.root[1:], agg.deal_size
            )
        moved = InclusionProof(
            proof.subtree, ProofData(proof.index.index ^ 1, proof.index.path)
        )
        with pytest.raises(AggregateError):
            moved.verify(pl.root, pl.size, agg.root, agg.deal_size)
        rt = InclusionProof.from_json(json.loads(json.dumps(proof.to_json())))
        assert rt == proof


def test_proof_data_limits() -> None:
    """Over-long paths, out-of-range indexes and bad nodes are refused."""
    with pytest.raises(AggregateError, match="longer"):
        ProofData(0, tuple(b"\0" * 32 for _ in range(64)))
    with pytest.raises(AggregateError, match="does not fit"):
        ProofData(4, (b"\0" * 32, b"\0" * 32))
    with pytest.raises(AggregateError, match="32 bytes"):
        ProofData(0, (b"\0" * 31,))
    with pytest.raises(AggregateError, match="not an inclusion proof"):
        InclusionProof.from_dag_cbor(b"\x01")
    with pytest.raises(AggregateError, match="malformed"):
        InclusionProof.from_json({"tree": {"offset": 0}})
