"""Type strategies registered through Hypothesis' entry point; valid store keys."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from carmigrate.cid import CID, Multihash
from carmigrate.storage import MemoryStore
from carmigrate.storage.lowlevel import validate_key
from carmigrate.testing.strategies import store_keys


@given(st.from_type(CID), st.from_type(Multihash))
def test_from_type_builds_cids_and_multihashes(cid: CID, mh: Multihash) -> None:
    assert CID.decode(str(cid)) == cid
    assert isinstance(mh, Multihash)


@given(store_keys(max_length=200))
def test_store_keys_are_valid_and_every_store_takes_them(key: str) -> None:
    assert validate_key(key, max_length=200) == key
    assert len(key.encode()) <= 200
    store = MemoryStore("keys")
    store.write(key, b"x")
    assert [i.key for i in store.list()] == [key]
