"""inspect_car: the summary of a CAR."""

from __future__ import annotations

import io
from pathlib import Path

from carmigrate.car import Block, CarWriter, inspect_car
from carmigrate.cid import CID

TESTDATA = (
    Path(__file__).resolve().parents[1] / "fixtures" / "go-car" / "v2" / "testdata"
)


def test_summary_of_go_cars_wrapped_sample() -> None:
    """Counts, sizes, histograms and the checked index of sample-wrapped-v2.car."""
    summary = inspect_car((TESTDATA / "sample-wrapped-v2.car").read_bytes())

    assert summary.version == 2
    assert summary.roots == (
        CID.decode("bafy2bzaced4ueelaegfs5fqu4tzsh6ywbbpfk3cxppupmxfdhbpbhzawfw5oy"),
    )
    assert summary.roots_present
    assert (summary.blocks, summary.unique_cids, summary.data_bytes) == (
        1049,
        1049,
        438130,
    )
    assert (summary.min_block_size, summary.max_block_size) == (1, 1342)
    assert summary.codecs == (("dag-cbor", 1043), ("raw", 6))
    assert summary.hashes == (("blake2b-256", 1043), ("identity", 6))
    assert summary.index is not None
    assert len(summary.index) == 1043


def test_summary_of_an_empty_car_with_a_missing_root() -> None:
    """No blocks: sizes are 0 and a declared root is reported missing."""
    root = Block.from_data(b"elsewhere").cid
    out = io.BytesIO()
    CarWriter(out, [root]).close()

    summary = inspect_car(io.BytesIO(out.getvalue()))

    assert (summary.blocks, summary.min_block_size, summary.max_block_size) == (0, 0, 0)
    assert not summary.roots_present
    assert summary.codecs == ()
    assert summary.index is None


def test_duplicates_count_as_blocks_not_cids() -> None:
    """A repeated block adds to blocks but not to distinct CIDs."""
    a = Block.from_data(b"a")
    out = io.BytesIO()
    with CarWriter(out, [a.cid]) as w:
        w.write(a.cid, a.data)
        w.write(a.cid, a.data)

    summary = inspect_car(out.getvalue())

    assert (summary.blocks, summary.unique_cids, summary.data_bytes) == (2, 1, 2)
