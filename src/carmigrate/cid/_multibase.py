"""The multibase encodings carmigrate reads and writes.

Only the bases CIDs are commonly written in are supported: base32 (lower and
upper, no padding), base58btc, base36 (lower and upper), base16 and
base64/base64url (no padding).
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from carmigrate.errors import FormatError

__all__ = ["BASES", "b58decode", "b58encode", "multibase_decode", "multibase_encode"]

_B58: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX: Final = {c: i for i, c in enumerate(_B58)}
_B36: Final = "0123456789abcdefghijklmnopqrstuvwxyz"

BASES: Final[dict[str, str]] = {
    "base16": "f",
    "base16upper": "F",
    "base32": "b",
    "base32upper": "B",
    "base36": "k",
    "base36upper": "K",
    "base58btc": "z",
    "base64": "m",
    "base64url": "u",
}
"""Supported multibase names and their one-character prefixes."""


def _int_encode(data: bytes, alphabet: str, zero: str) -> str:
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    base = len(alphabet)
    digits = []
    while n:
        n, r = divmod(n, base)
        digits.append(alphabet[r])
    return zero * zeros + "".join(reversed(digits))


def _int_decode(text: str, index: dict[str, int], zero: str, what: str) -> bytes:
    base = len(index)
    n = 0
    for pos, c in enumerate(text):
        try:
            n = n * base + index[c]
        except KeyError:
            msg = f"character {c!r} at position {pos} is not valid {what}"
            raise FormatError(msg) from None
    zeros = len(text) - len(text.lstrip(zero))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def b58encode(data: bytes) -> str:
    """Encode bytes as base58btc (no multibase prefix)."""
    return _int_encode(data, _B58, "1")


def b58decode(text: str) -> bytes:
    """Decode base58btc text (no multibase prefix).

    Raises:
        FormatError: On a character outside the base58btc alphabet.
    """
    return _int_decode(text, _B58_INDEX, "1", "base58btc")


_B36_INDEX: Final = {c: i for i, c in enumerate(_B36)}


def multibase_encode(data: bytes, base: str = "base32") -> str:
    """Encode bytes with a multibase prefix.

    Args:
        data: The bytes.
        base: A name from [BASES][carmigrate.cid.BASES].

    Raises:
        ValueError: If the base is not supported.
    """
    if base == "base32":
        return "b" + base64.b32encode(data).decode("ascii").rstrip("=").lower()
    if base == "base32upper":
        return "B" + base64.b32encode(data).decode("ascii").rstrip("=")
    if base == "base58btc":
        return "z" + b58encode(data)
    if base == "base36":
        return "k" + _int_encode(data, _B36, "0")
    if base == "base36upper":
        return "K" + _int_encode(data, _B36, "0").upper()
    if base == "base16":
        return "f" + data.hex()
    if base == "base16upper":
        return "F" + data.hex().upper()
    if base == "base64":
        return "m" + base64.b64encode(data).decode("ascii").rstrip("=")
    if base == "base64url":
        return "u" + base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")
    msg = f"unsupported multibase {base!r}; supported: {', '.join(sorted(BASES))}"
    raise ValueError(msg)


def multibase_decode(text: str) -> tuple[str, bytes]:
    """Decode multibase text, accepting only its canonical form.

    The text must be exactly what [multibase_encode][carmigrate.cid.multibase_encode]
    writes for the decoded bytes: no padding, whitespace or characters
    outside the alphabet, no mixed case, no stray trailing bits. A value has
    one spelling per base.

    Returns:
        ``(base name, bytes)``.

    Raises:
        FormatError: If the prefix is unknown or the body is not canonical
            text in that base.
    """
    if not text:
        msg = "empty string is not multibase"
        raise FormatError(msg)
    prefix, body = text[0], text[1:]
    base = _PREFIXES.get(prefix)
    if base is None:
        msg = f"unknown multibase prefix {prefix!r}"
        raise FormatError(msg)
    if not body.isascii():
        msg = f"{base} text has non-ASCII characters"
        raise FormatError(msg)
    if prefix == "b":
        return base, _b32_lower_decode(body)
    try:
        if prefix in "bB":
            data = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        elif prefix == "z":
            data = b58decode(body)
        elif prefix in "kK":
            data = _int_decode(body.lower(), _B36_INDEX, "0", "base36")
        elif prefix in "fF":
            data = bytes.fromhex(body)
        elif prefix == "m":
            data = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        else:
            data = base64.b64decode(
                body + "=" * (-len(body) % 4), altchars=b"-_", validate=True
            )
    except (binascii.Error, ValueError) as exc:
        if isinstance(exc, FormatError):
            raise
        msg = f"invalid {base} text: {exc}"
        raise FormatError(msg) from exc
    if multibase_encode(data, base) != text:
        msg = f"{base} text is not in canonical form (padding, case, whitespace or trailing bits)"
        raise FormatError(msg)
    return base, data


_PREFIXES: Final = {v: k for k, v in BASES.items()}

_B32_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz234567"
_B32_AS_DIGITS: Final = str.maketrans(_B32_ALPHABET, "0123456789abcdefghijklmnopqrstuv")


def _b32_lower_decode(body: str) -> bytes:
    """Decode canonical lowercase, unpadded base32 (the CID default) at C speed.

    The body, read as a base-32 number, holds the bytes followed by 0-4
    padding bits: a canonical body has a length some byte count encodes to
    and zero padding bits. Same acceptance as decoding and re-encoding.
    """
    nbytes, pad = divmod(5 * len(body), 8)
    if pad >= 5:
        msg = f"base32 text of {len(body)} characters is not a whole number of bytes"
        raise FormatError(msg)
    if body.strip(_B32_ALPHABET):
        msg = "invalid base32 text: characters outside the lowercase alphabet"
        raise FormatError(msg)
    if not body:
        return b""
    value = int(body.translate(_B32_AS_DIGITS), 32)
    if value & ((1 << pad) - 1):
        msg = "base32 text is not in canonical form (trailing bits)"
        raise FormatError(msg)
    return (value >> pad).to_bytes(nbytes, "big")
