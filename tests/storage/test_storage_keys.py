"""Key rules: portable keys only, and none can escape a store's root."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carmigrate.errors import InvalidKey
from carmigrate.storage.lowlevel import keys_to_check, validate_key, validate_prefix


@pytest.mark.parametrize(
    "key",
    ["a", "a/b", "a-b.c_d", "caf\u00e9/\U0001f600", "..a", "a..", ".hidden", "a b"],
)
def test_valid_keys(key: str) -> None:
    """Ordinary relative paths, Unicode and dots inside names are fine."""
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    ["", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "../a", "a\x00", "a\nb", "\x7f",
     "\udcff"],
)  # fmt: skip
def test_invalid_keys(key: str) -> None:
    """Empty, absolute, dot segments, control characters and non-UTF-8 are refused."""
    with pytest.raises(InvalidKey):
        validate_key(key)


def test_length_limit() -> None:
    """The limit counts UTF-8 bytes."""
    validate_key("\u00e9" * 512)
    with pytest.raises(InvalidKey, match="1024"):
        validate_key("\u00e9" * 513)
    validate_key("x" * 5000, max_length=None)
    with pytest.raises(InvalidKey):
        validate_key(b"bytes")  # type: ignore[arg-type]


def test_prefixes() -> None:
    """Prefixes may be empty or end in '/', but no complete segment may be bad."""
    for prefix in ("", "a", "a/", "a/b", "a/.", "a/.."):
        assert validate_prefix(prefix) == prefix
    for prefix in ("/a", "a//", "../", "a/./", "\x00"):
        with pytest.raises(InvalidKey):
            validate_prefix(prefix)


@given(st.text(max_size=40))
def test_valid_keys_never_escape_the_root(key: str) -> None:
    """Any key that passes validation stays below the root once joined."""
    try:
        validate_key(key)
    except InvalidKey:
        return
    joined = posixpath.normpath(posixpath.join("/root", key))

    assert joined.startswith("/root/")
    assert joined == "/root/" + key


_KEYISH = st.text(alphabet=st.sampled_from("ab./\t\x7fé"), max_size=12)


@given(st.lists(_KEYISH, max_size=30), st.sampled_from([None, 3, 8, 1024]))
def test_keys_to_check_never_clears_a_bad_key(
    keys: list[str], max_length: int | None
) -> None:
    """Every key keys_to_check does not list is valid (compiled and pure Python)."""
    from carmigrate.storage._keys import _suspects_py

    for find in (keys_to_check, _suspects_py):
        if find is _suspects_py:
            listed = set(_suspects_py(keys, -1 if max_length is None else max_length))
        else:
            listed = set(keys_to_check(keys, max_length=max_length))
        assert listed <= set(range(len(keys)))
        for i, key in enumerate(keys):
            if i in listed:
                continue
            assert validate_key(key, max_length=max_length) == key


def test_keys_to_check_lists_exactly_the_bad_ascii_keys() -> None:
    keys = ["a/b", "a//b", "/x", "x/", "./x", "a/./b", "a/../b", "..", "a\tb", "",
            "aaaaa", ".hidden/x", "a/.b", "a..", "..a"]  # fmt: skip
    assert keys_to_check(keys, max_length=None) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert 10 in keys_to_check(keys, max_length=4)
