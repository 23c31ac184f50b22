"""Key rules shared by every store."""

from __future__ import annotations

from typing import Final

from carmigrate.errors import InvalidKey

__all__ = ["DEFAULT_MAX_KEY_LENGTH", "validate_key", "validate_prefix"]

DEFAULT_MAX_KEY_LENGTH: Final = 1024
"""The longest key accepted by default, in UTF-8 bytes (S3's limit)."""

_FORBIDDEN_SEGMENTS = frozenset({"", ".", ".."})


def _check_chars(text: str, what: str, key: str) -> None:
    for ch in text:
        if ch < "\x20" or ch == "\x7f":
            raise InvalidKey(
                f"{what} {key!r} contains the control character {ch!r}", key=key
            )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidKey(f"{what} {key!r} is not valid UTF-8", key=key) from e


def validate_key(key: str, *, max_length: int | None = DEFAULT_MAX_KEY_LENGTH) -> str:
    """Check that ``key`` is a portable object key and return it unchanged.

    A key is a relative, ``/``-separated path that means the same on every
    backend: not empty; no leading or trailing ``/``; no empty, ``.`` or
    ``..`` segment; no control characters (NUL included); valid UTF-8; at most
    ``max_length`` UTF-8 bytes. Backends may refuse more (see their
    [Capabilities][carmigrate.storage.Capabilities]) but never less, so a key
    can never escape a store's root.

    Args:
        key: The key to check.
        max_length: Limit in UTF-8 bytes, or ``None`` for no limit.

    Returns:
        ``key``, unchanged.

    Raises:
        InvalidKey: The key breaks one of the rules; the message says which.
    """
    if not isinstance(key, str):
        raise InvalidKey(f"key must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKey("key is empty", key=key)
    _check_chars(key, "key", key)
    if key.startswith("/"):
        raise InvalidKey(f"key {key!r} is absolute (starts with '/')", key=key)
    if key.endswith("/"):
        raise InvalidKey(f"key {key!r} ends with '/'", key=key)
    for segment in key.split("/"):
        if segment in _FORBIDDEN_SEGMENTS:
            raise InvalidKey(
                f"key {key!r} has an empty, '.' or '..' path segment", key=key
            )
    if max_length is not None and len(key.encode("utf-8")) > max_length:
        raise InvalidKey(
            f"key {key!r} is longer than {max_length} bytes in UTF-8", key=key
        )
    return key


def validate_prefix(prefix: str) -> str:
    """Check a listing prefix: like a key, but may be empty or end in ``/``.

    Raises:
        InvalidKey: The prefix could never match a valid key.
    """
    if not isinstance(prefix, str):
        raise InvalidKey(f"prefix must be a str, not {type(prefix).__name__}")
    if not prefix:
        return prefix
    _check_chars(prefix, "prefix", prefix)
    if prefix.startswith("/"):
        raise InvalidKey(f"prefix {prefix!r} is absolute", key=prefix)
    # every complete segment (one followed by '/') must be a valid segment
    for segment in prefix.split("/")[:-1]:
        if segment in _FORBIDDEN_SEGMENTS:
            raise InvalidKey(
                f"prefix {prefix!r} has an empty, '.' or '..' path segment",
                key=prefix,
            )
    return prefix
