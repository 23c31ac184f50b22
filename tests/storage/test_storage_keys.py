"""Key rules: portable keys only, and none can escape a store's root."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carmigrate.errors import InvalidKey
from carmigrate.storage.lowlevel import validate_key, validate_prefix


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
