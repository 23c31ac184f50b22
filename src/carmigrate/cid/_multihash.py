"""Multihash values and digest verification."""

from __future__ import annotations

import enum
import hashlib
from typing import TYPE_CHECKING, Final, final

from carmigrate.cid._codes import HASHES, hash_name
from carmigrate.cid._varint import decode_varint, encode_varint
from carmigrate.errors import FormatError

if TYPE_CHECKING:
    from collections.abc import Callable

    from carmigrate.cid._types import Buffer

__all__ = [
    "HashCheck",
    "Multihash",
    "UnsupportedHash",
    "hash_digest",
    "supported_hashes",
]


class UnsupportedHash(FormatError):
    """A digest cannot be checked because its hash function is not supported.

    Args:
        code: The multihash function code.
    """

    def __init__(self, code: int) -> None:
        super().__init__(
            f"hash function {hash_name(code)} (0x{code:x}) is not supported for "
            "verification; supported: "
            + ", ".join(hash_name(c) for c in sorted(_HASHERS))
        )
        self.code = code


class HashCheck(enum.Enum):
    """Outcome of checking data against a digest.

    ``UNVERIFIABLE`` is its own outcome: nothing independent was compared,
    so it must never be counted as verified.
    """

    VERIFIED = "verified"
    MISMATCH = "mismatch"
    UNVERIFIABLE = "unverifiable"


def _sha256(data: Buffer) -> bytes:
    return hashlib.sha256(data).digest()


def _sha512(data: Buffer) -> bytes:
    return hashlib.sha512(data).digest()


def _blake2b256(data: Buffer) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def _identity(data: Buffer) -> bytes:
    return bytes(data)


_HASHERS: Final[dict[int, Callable[[Buffer], bytes]]] = {
    HASHES["identity"]: _identity,
    HASHES["sha2-256"]: _sha256,
    HASHES["sha2-512"]: _sha512,
    HASHES["blake2b-256"]: _blake2b256,
}


def supported_hashes() -> frozenset[int]:
    """The multihash codes whose digests carmigrate can compute and verify."""
    return frozenset(_HASHERS)


def hash_digest(code: int, data: Buffer) -> bytes:
    """Compute the digest of ``data`` with the hash function ``code``.

    Raises:
        UnsupportedHash: If ``code`` is not one of
            [supported_hashes][carmigrate.cid.supported_hashes].
    """
    try:
        fn = _HASHERS[code]
    except KeyError:
        raise UnsupportedHash(code) from None
    return fn(data)


@final
class Multihash:
    """A multihash value: a hash function code and a digest. Frozen, hashable.

    Equality and hashing are by the binary encoding.

    Args:
        code: Multihash function code (for example ``0x12`` for sha2-256).
        digest: The digest bytes.
    """

    __slots__ = ("_code", "_digest")

    _code: int
    _digest: bytes

    def __init__(self, code: int, digest: bytes) -> None:
        if code < 0:
            msg = f"multihash code must be non-negative, got {code}"
            raise ValueError(msg)
        object.__setattr__(self, "_code", code)
        object.__setattr__(self, "_digest", bytes(digest))

    def __setattr__(self, name: str, value: object) -> None:
        msg = "Multihash is immutable"
        raise AttributeError(msg)

    @classmethod
    def from_bytes(cls, data: Buffer) -> Multihash:
        """Parse a binary multihash (code, length, digest), exactly.

        Raises:
            FormatError: If the bytes are truncated or have trailing data.
        """
        mh, end = cls.read(data, 0)
        if end != len(data):
            msg = f"{len(data) - end} trailing bytes after multihash"
            raise FormatError(msg)
        return mh

    @classmethod
    def read(cls, data: Buffer, offset: int = 0) -> tuple[Multihash, int]:
        """Parse a binary multihash at ``offset``; return it and the end offset.

        Raises:
            FormatError: If the bytes end before the declared digest length.
        """
        code, pos = decode_varint(data, offset)
        length, pos = decode_varint(data, pos)
        end = pos + length
        if end > len(data):
            msg = (
                f"multihash at offset {offset} declares a {length}-byte digest "
                f"but only {len(data) - pos} bytes follow"
            )
            raise FormatError(msg)
        return cls(code, bytes(data[pos:end])), end

    @classmethod
    def digest_of(cls, data: Buffer, code: int = 0x12) -> Multihash:
        """Hash ``data`` with the function ``code`` (default sha2-256).

        Raises:
            UnsupportedHash: If ``code`` is not supported.
        """
        return cls(code, hash_digest(code, data))

    @property
    def code(self) -> int:
        """The hash function code."""
        return self._code

    @property
    def name(self) -> str:
        """The hash function's multicodec name (or hex code if unknown)."""
        return hash_name(self._code)

    @property
    def digest(self) -> bytes:
        """The digest bytes."""
        return self._digest

    def __bytes__(self) -> bytes:
        return (
            encode_varint(self._code) + encode_varint(len(self._digest)) + self._digest
        )

    def check(self, data: Buffer) -> HashCheck:
        """Compare ``data`` against this digest.

        Returns:
            ``VERIFIED`` or ``MISMATCH``; ``UNVERIFIABLE`` when the hash
            function is not supported (never ``VERIFIED`` in that case).
        """
        fn = _HASHERS.get(self._code)
        if fn is None:
            return HashCheck.UNVERIFIABLE
        return HashCheck.VERIFIED if fn(data) == self._digest else HashCheck.MISMATCH

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Multihash):
            return NotImplemented
        return self._code == other._code and self._digest == other._digest

    def __hash__(self) -> int:
        return hash((self._code, self._digest))

    def __repr__(self) -> str:
        return f"Multihash({self.name}, {self._digest.hex()})"
