"""The one registry of digest algorithms: an open vocabulary of whole-object digests.

Every layer that hashes or compares an object's bytes names its digests by
the names registered here: ``md5``, ``sha1``, ``sha256``, ``sha512``,
``adler32`` (ownCloud stores it), and ``blake3`` when the optional ``blake3``
package is installed. A mapping of such names to lowercase hex digests
(``digests: Mapping[str, str]``) is what a listing, a plan item, a
destination write, a transfer's facts and the ledger carry, so a source that
vouches for any registered digest (a listing, a BagIt manifest, S3
checksums, a database column) can be compared against what was read.

Names from other systems are turned into registry names by
[canonical_name][carmigrate.digests.canonical_name]: ``SHA-256``,
``SHA256``, ``sha_256`` and ``sha256`` are one algorithm; ``ADLER32`` (as
ownCloud writes it) is ``adler32``.

More algorithms can be added with
[register][carmigrate.digests.register]; a name is registered once.

This module is at the bottom of the package's layers (beside
[carmigrate.errors][]): storage backends, formats and the engine all use it.
"""

from __future__ import annotations

import hashlib
import threading
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Protocol, cast, final

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = [
    "DigestAlgorithm",
    "DigestMap",
    "Hasher",
    "MultiHasher",
    "algorithm",
    "algorithm_names",
    "canonical_name",
    "clean_digests",
    "is_registered",
    "normalize_digests",
    "register",
    "strongest",
]


class Hasher(Protocol):
    """An incremental hash: what a [DigestAlgorithm][carmigrate.digests.DigestAlgorithm] makes.

    ``hashlib`` objects qualify as they are.
    """

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        """Feed the next bytes."""
        ...

    def hexdigest(self) -> str:
        """The digest of everything fed so far, as lowercase hex (feeding may go on)."""
        ...


@final
class _Adler32:
    """Adler-32 (RFC 1950) as a hashlib-like object: 8 lowercase hex digits.

    State: the running checksum.
    """

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 1

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self._value = zlib.adler32(data, self._value)

    def hexdigest(self) -> str:
        return f"{self._value:08x}"


def _hashlib(name: str) -> Callable[[], Hasher]:
    def make() -> Hasher:
        return hashlib.new(name, usedforsecurity=False)

    make.__name__ = f"new_{name}"
    return make


def _blake3() -> Hasher:
    import blake3  # optional dependency, imported only when a BLAKE3 is asked for

    return cast("Hasher", blake3.blake3(max_threads=1))


@attrs.frozen(kw_only=True)
class DigestAlgorithm:
    """One registered algorithm.

    Attributes:
        name: Its registry name: lowercase letters and digits
            (``"sha256"``).
        hex_length: Length of its digest in hex digits.
        strength: Rank among the registered algorithms when two parties
            share several: a higher number is preferred (see
            [strongest][carmigrate.digests.strongest]). MD5 and SHA-1 are
            weak against a deliberate collision, Adler-32 is a check sum
            that only catches accidents.
        cryptographic: Whether equal digests prove equal bytes against a
            deliberate forger (``False`` for md5, sha1 and adler32).
        factory: Makes a fresh [Hasher][carmigrate.digests.Hasher].
        aliases: Other spellings accepted by
            [canonical_name][carmigrate.digests.canonical_name].
    """

    name: str
    hex_length: int
    strength: int
    cryptographic: bool
    factory: Callable[[], Hasher] = attrs.field(eq=False, repr=False)
    aliases: tuple[str, ...] = ()

    def new(self) -> Hasher:
        """A fresh incremental hasher."""
        return self.factory()

    def digest(self, data: bytes | bytearray | memoryview) -> str:
        """The hex digest of ``data`` in one call."""
        h = self.factory()
        h.update(data)
        return h.hexdigest()

    def valid(self, value: str) -> bool:
        """Whether ``value`` is a lowercase hex digest of this algorithm's length."""
        return len(value) == self.hex_length and _is_lower_hex(value)


_HEX: Final = frozenset("0123456789abcdef")


def _is_lower_hex(value: str) -> bool:
    return set(value) <= _HEX


_lock = threading.Lock()
_REGISTRY: dict[str, DigestAlgorithm] = {}
_ALIASES: dict[str, str] = {}


def _fold(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def register(alg: DigestAlgorithm) -> None:
    """Add an algorithm to the registry.

    Args:
        alg: The algorithm. Its name and aliases are folded like
            [canonical_name][carmigrate.digests.canonical_name] folds them.

    Raises:
        ValueError: The name is not lowercase letters and digits, or it or an
            alias is registered already.
    """
    if not alg.name or not alg.name.isascii() or not alg.name.isalnum():
        raise ValueError(f"digest name {alg.name!r} must be ASCII letters and digits")
    if alg.name != alg.name.lower():
        raise ValueError(f"digest name {alg.name!r} must be lowercase")
    with _lock:
        folded = [_fold(a) for a in (alg.name, *alg.aliases)]
        for f in folded:
            if f in _ALIASES:
                raise ValueError(
                    f"digest name {f!r} is registered already (as {_ALIASES[f]!r})"
                )
        _REGISTRY[alg.name] = alg
        for f in folded:
            _ALIASES[f] = alg.name


def _blake3_available() -> bool:
    try:
        import blake3  # noqa: F401
    except ImportError:
        return False
    return True


for _alg in (
    DigestAlgorithm(
        name="adler32",
        hex_length=8,
        strength=0,
        cryptographic=False,
        factory=_Adler32,
    ),
    DigestAlgorithm(
        name="md5",
        hex_length=32,
        strength=10,
        cryptographic=False,
        factory=_hashlib("md5"),
    ),
    DigestAlgorithm(
        name="sha1",
        hex_length=40,
        strength=20,
        cryptographic=False,
        factory=_hashlib("sha1"),
    ),
    DigestAlgorithm(
        name="sha256",
        hex_length=64,
        strength=40,
        cryptographic=True,
        factory=_hashlib("sha256"),
    ),
    DigestAlgorithm(
        name="sha512",
        hex_length=128,
        strength=50,
        cryptographic=True,
        factory=_hashlib("sha512"),
    ),
):
    register(_alg)

if _blake3_available():
    register(
        DigestAlgorithm(
            name="blake3",
            hex_length=64,
            strength=45,
            cryptographic=True,
            factory=_blake3,
        )
    )


def algorithm_names() -> tuple[str, ...]:
    """The registered names, sorted."""
    return tuple(sorted(_REGISTRY))


def canonical_name(name: str) -> str:
    """The registry name for a spelling from another system.

    Case, ``-`` and ``_`` are ignored: ``SHA-256``, ``sha_256`` and
    ``SHA256`` give ``"sha256"``; ``ADLER32`` gives ``"adler32"``.

    Raises:
        ValueError: No registered algorithm has that name; the message lists
            the registered ones.
    """
    found = _ALIASES.get(_fold(name))
    if found is None:
        raise ValueError(
            f"unknown digest algorithm {name!r}; registered: {', '.join(algorithm_names())}"
            + ("" if _blake3_available() else " (blake3 needs the 'blake3' package)")
        )
    return found


def is_registered(name: str) -> bool:
    """Whether ``name`` (any spelling) names a registered algorithm."""
    return _fold(name) in _ALIASES


def algorithm(name: str) -> DigestAlgorithm:
    """The registered algorithm for ``name`` (any spelling).

    Raises:
        ValueError: Unknown name.
    """
    return _REGISTRY[canonical_name(name)]


def normalize_digests(digests: Mapping[str, str] | None) -> dict[str, str]:
    """Check digests given by a caller and put them in canonical form.

    Args:
        digests: Digests by algorithm name (any spelling), as hex of any case.

    Returns:
        A new dict, registry names to lowercase hex, sorted by name (empty for
        ``None``).

    Raises:
        ValueError: An unknown algorithm, a name given twice in two
            spellings, or a value that is not hex of the algorithm's length.
    """
    out: dict[str, str] = {}
    for name, value in (digests or {}).items():
        alg = algorithm(name)
        if alg.name in out:
            raise ValueError(f"digest {alg.name!r} is given twice (as {name!r})")
        if not isinstance(value, str):
            raise ValueError(f"{alg.name} digest {value!r} is not a string")
        v = value.lower()
        if not alg.valid(v):
            raise ValueError(
                f"{alg.name} digest {value!r} is not {alg.hex_length} hex digits"
            )
        out[alg.name] = v
    return dict(sorted(out.items()))


def clean_digests(digests: Mapping[str, str | None] | None) -> dict[str, str]:
    """Keep only the well-formed digests of untrusted input, in canonical form.

    For listings and inventories: an unknown algorithm, a ``None`` and a
    value that is not hex of the algorithm's length (such as a multipart S3
    ETag ``"…-3"`` offered as an MD5) are dropped, never guessed at.

    Returns:
        A new dict, registry names to lowercase hex, sorted by name.
    """
    out: dict[str, str] = {}
    if not digests:
        return out
    for name, value in digests.items():
        canonical = _ALIASES.get(_fold(name))
        if canonical is None or not isinstance(value, str):
            continue
        v = value.lower()
        if _REGISTRY[canonical].valid(v):
            out[canonical] = v
    return dict(sorted(out.items()))


def strongest(names: Iterable[str]) -> str | None:
    """The strongest registered algorithm among ``names`` (``None`` if none is).

    Used where two parties each vouch for several digests and one comparison
    is enough (a BagIt replica's tag manifest against its source's).
    """
    best: DigestAlgorithm | None = None
    for n in names:
        canonical = _ALIASES.get(_fold(n))
        if canonical is None:
            continue
        alg = _REGISTRY[canonical]
        if best is None or alg.strength > best.strength:
            best = alg
    return None if best is None else best.name


@final
class MultiHasher:
    """Several digests of the same bytes, computed in one pass.

    State: one hasher per algorithm.

    Args:
        names: Algorithm names (any spelling); repeats are ignored.

    Raises:
        ValueError: An unknown name.
    """

    __slots__ = ("_hashers",)

    def __init__(self, names: Iterable[str]) -> None:
        canonical = sorted({canonical_name(n) for n in names})
        self._hashers: dict[str, Hasher] = {n: _REGISTRY[n].new() for n in canonical}

    @property
    def names(self) -> tuple[str, ...]:
        """The algorithms computed, sorted."""
        return tuple(self._hashers)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed the next bytes to every hasher."""
        for h in self._hashers.values():
            h.update(data)

    def hexdigests(self) -> dict[str, str]:
        """Every digest of the bytes fed so far, by name (sorted)."""
        return {n: h.hexdigest() for n, h in self._hashers.items()}

    def __bool__(self) -> bool:
        return bool(self._hashers)


def _frozen(self: object, *args: object, **kwargs: object) -> None:
    raise TypeError("a DigestMap cannot be changed; make a new one")


@final
class DigestMap(dict[str, str]):
    """Digests of one object: an immutable, hashable, picklable mapping in canonical form.

    Keys are registry names, values lowercase hex of the right length, in
    name order. It is a ``dict`` (lookups, iteration and ``len`` run at C
    speed; it compares equal to any mapping with the same items) that
    refuses every change, so it can sit in frozen values, be hashed and be
    pickled to worker processes. Used for the ``digests`` of listings, plan
    items and ledger records.

    Args:
        digests: Digests by any spelling of their names (validated by
            [normalize_digests][carmigrate.digests.normalize_digests]).

    Raises:
        ValueError: An unknown algorithm or a malformed digest.
    """

    __slots__ = ("_hash", "_json")

    def __init__(self, digests: Mapping[str, str] | None = None) -> None:
        data = digests if type(digests) is DigestMap else normalize_digests(digests)
        dict.__init__(self, data)
        self._hash: int | None = None
        self._json: str | None = None

    @classmethod
    def _trusted(cls, data: Mapping[str, str]) -> DigestMap:
        """Wrap digests already in canonical form, sorted (no checks; internal)."""
        out = cls.__new__(cls)
        dict.__init__(out, data)
        out._hash = None
        out._json = None
        return out

    __setitem__ = __delitem__ = _frozen
    clear = pop = popitem = setdefault = update = _frozen  # type: ignore[assignment]
    __ior__ = _frozen  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        if self._hash is None:
            self._hash = hash(tuple(self.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"DigestMap({dict.__repr__(self)})"

    def __reduce__(self) -> tuple[object, ...]:
        return (DigestMap._trusted, (dict(self),))

    def to_dict(self) -> dict[str, str]:
        """A plain ``dict`` copy (for JSON)."""
        return dict(self)

    def to_json(self) -> str:
        """Canonical JSON of the digests (sorted names, compact), computed once."""
        j = self._json
        if j is None:
            j = self._json = (
                "{" + ",".join(f'"{k}":"{v}"' for k, v in sorted(self.items())) + "}"
            )
        return j
