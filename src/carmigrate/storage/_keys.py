"""Key rules shared by every store."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from carmigrate.errors import InvalidKey

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DEFAULT_MAX_KEY_LENGTH", "keys_to_check", "validate_key", "validate_prefix"]

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


def _suspects_py(keys: list[str], max_length: int) -> list[int]:
    """The pure-Python ``keys_to_check``: one test of the whole list, then key by key."""
    if not keys:
        return []
    joined = "\n".join(keys)  # "\n" is in no valid key
    if (
        joined.count("\n") == len(keys) - 1
        and joined[:1] not in ("", "/", "\n")  # the first key is not empty
        and joined[-1] not in ("/", "\n")  # nor the last
        and "\n\n" not in joined
        and "\n/" not in joined
        and "/\n" not in joined
        and "//" not in joined
        and "/." not in joined
        and "\n." not in joined
        and joined[:1] != "."
        and " ".join(keys).isprintable()
        and (max_length < 0 or max(map(len, keys)) * 4 <= max_length)
    ):
        return []
    out = []
    for i, key in enumerate(keys):
        try:
            validate_key(key, max_length=None if max_length < 0 else max_length)
        except InvalidKey:
            out.append(i)
    return out


try:
    _suspects: Callable[[list[str], int], list[int]] = importlib.import_module(
        "carmigrate.storage._fastio"
    ).suspects
except (ImportError, AttributeError):  # pragma: no cover - the module was not built
    _suspects = _suspects_py


def keys_to_check(keys: list[str], *, max_length: int | None) -> list[int]:
    """The indices of ``keys`` that [validate_key][carmigrate.storage.lowlevel.validate_key] must look at.

    Every key not listed keeps every key rule (with ``max_length`` in UTF-8
    bytes, ``None`` for no limit); a listed key may or may not, and only
    ``validate_key`` says which rule it breaks. One pass over the whole
    list, in C when the compiled core is built (ASCII keys are checked
    exactly; every other key is listed), else a pure-Python test of the
    whole list that falls back to checking key by key.

    Args:
        keys: The keys (a list, read once).
        max_length: Limit in UTF-8 bytes, or ``None`` for no limit.

    Returns:
        Ascending indices into ``keys``.
    """
    limit = -1 if max_length is None else max_length
    found: list[int] = _suspects(keys, limit)
    return found


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
