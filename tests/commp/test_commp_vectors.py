"""Every vector in tests/vectors/commp passes with every available implementation."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from commp_payloads import IMPLEMENTATIONS, NATIVE, REFERENCE_LIMIT, load, payload

from carmigrate.commp import (
    PieceHasher,
    PieceInfo,
    commp,
    to_piece_cid_v1,
    to_piece_cid_v2,
)

PIECES = load("pieces.jsonl")
SMALL = load("small-payloads.jsonl")
ALL = PIECES + SMALL


def _id(v: dict[str, Any]) -> str:
    return f"{v['generator']}-{v['size']}"


def _cases() -> list[Any]:
    cases = []
    for impl in IMPLEMENTATIONS:
        for v in ALL:
            if impl == "reference" and v["size"] > REFERENCE_LIMIT:
                continue
            cases.append(pytest.param(impl, v, id=f"{impl}-{_id(v)}"))
    return cases


def _check(info: PieceInfo, v: dict[str, Any]) -> None:
    assert info.root.hex() == v["root"]
    assert str(info.cid_v1) == v["pieceCidV1"]
    assert str(info.cid_v2) == v["pieceCidV2"]
    assert info.padded_size == v["paddedSize"]
    assert info.height == v["height"]
    assert info.padding == v["padding"]
    assert info.payload_size == v["size"]


def test_vector_files_are_complete() -> None:
    assert len(PIECES) == 72
    assert len(SMALL) == 18


@pytest.mark.parametrize("v", ALL, ids=_id)
def test_generator_matches_vector(v: dict[str, Any]) -> None:
    data = payload(v["generator"], v["size"])
    assert hashlib.sha256(data).hexdigest() == v["payloadSha256"]


@pytest.mark.parametrize(("impl", "v"), _cases())
def test_vector(impl: str, v: dict[str, Any]) -> None:
    info = commp(payload(v["generator"], v["size"]), implementation=impl)
    _check(info, v)


@pytest.mark.parametrize("v", ALL, ids=_id)
def test_vector_cids_decode(v: dict[str, Any]) -> None:
    """Decoding the vector's CIDs gives back its numbers (no hashing)."""
    info = PieceInfo.from_cid(v["pieceCidV2"])
    _check(info, v)
    assert to_piece_cid_v1(v["pieceCidV2"]).encode() == v["pieceCidV1"]
    again = to_piece_cid_v2(
        v["pieceCidV1"], v["paddedSize"], padding=v["padding"]
    ).encode()
    assert again == v["pieceCidV2"]
    v1 = PieceInfo.from_cid(v["pieceCidV1"], v["paddedSize"])
    assert v1.root.hex() == v["root"]
    assert v1.payload_size is None


@pytest.mark.parametrize("impl", NATIVE)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_vectors_split_into_small_chunks(
    impl: str, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 4-quad chunks every vector crosses many chunk and batch boundaries."""
    from carmigrate.commp import _native_engine

    monkeypatch.setattr(_native_engine, "CHUNK_LOG2", 2)
    monkeypatch.setattr(_native_engine, "BATCH_CHUNKS", 5)
    for v in ALL:
        if v["size"] > 300_000:
            continue
        data = payload(v["generator"], v["size"])
        h = PieceHasher(threads=threads, implementation=impl)
        # uneven update sizes: some smaller and some larger than a batch
        pos, step = 0, 1
        while pos < len(data):
            h.update(data[pos : pos + step])
            pos += step
            step = step * 3 + 7
        _check(h.piece_info(), v)
