"""Hypothesis strategies for CIDs, blocks and CAR files, and a CAR corrupter.

Needs the ``testing`` extra (``pip install 'carmigrate[testing]'``), which
brings Hypothesis. The strategies follow Hypothesis' API style: plural names,
keyword-only arguments with defaults that allow everything valid, arguments
that shape elements take strategies, and bad arguments raise
``hypothesis.errors.InvalidArgument`` when the strategy is first drawn from.

Example:
    ```python
    from hypothesis import given
    from carmigrate.car import verify_car
    from carmigrate.testing.strategies import car_bytes

    @given(car_bytes())
    def test_generated_cars_verify(data):
        assert verify_car(data).fully_verified
    ```
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Final, Literal, TypeVar

import attrs

try:
    from hypothesis import strategies as st
    from hypothesis.errors import InvalidArgument
    from hypothesis.strategies import SearchStrategy
except ImportError as exc:  # pragma: no cover - depends on the environment
    msg = "carmigrate.testing.strategies needs Hypothesis: pip install 'carmigrate[testing]'"
    raise ImportError(msg) from exc

from carmigrate.car import (
    INDEX_SORTED,
    MULTIHASH_INDEX_SORTED,
    Block,
    CarBlockReader,
    CarV2Header,
    CarWriter,
)
from carmigrate.car.lowlevel import PRAGMA
from carmigrate.cid import CID, CODECS, HASHES, Multihash
from carmigrate.cid.lowlevel import encode_varint
from carmigrate.errors import (
    BlockHashMismatch,
    CarFormatError,
    FormatError,
    InvalidKey,
    LimitExceeded,
)
from carmigrate.storage.lowlevel import DEFAULT_MAX_KEY_LENGTH, validate_key

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "CORRUPTIONS",
    "Corruption",
    "blocks",
    "car_bytes",
    "cids",
    "corrupt_car",
    "corruptions",
    "register_type_strategies",
    "store_keys",
]

T = TypeVar("T")

CORRUPTIONS: Final = ("flip-data", "truncate", "section-length", "header-length")
"""The ways [corrupt_car][carmigrate.testing.strategies.corrupt_car] can break a CAR."""

_DIGEST_SIZES: Final = {
    HASHES["sha2-256"]: 32,
    HASHES["sha2-512"]: 64,
    HASHES["blake2b-256"]: 32,
    HASHES["sha3-256"]: 32,
    HASHES["blake3"]: 32,
    HASHES["sha1"]: 20,
}
_HUGE: Final = 1 << 62


def _default_codecs() -> SearchStrategy[int]:
    return st.sampled_from(
        [CODECS["raw"], CODECS["dag-pb"], CODECS["dag-cbor"], CODECS["dag-json"]]
    )


def _check_strategy(value: object, name: str) -> None:
    if not isinstance(value, SearchStrategy):
        msg = f"{name}={value!r} must be a Hypothesis strategy"
        raise InvalidArgument(msg)


def _check_size(value: object, name: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"{name}={value!r} must be a non-negative integer"
        raise InvalidArgument(msg)


def _deferred(build: Callable[[], SearchStrategy[T]]) -> SearchStrategy[T]:
    # Validation runs inside ``build``, at first draw, as Hypothesis does.
    return st.deferred(build)


def _code(value: str | int, table: dict[str, int], what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value in table:
        return table[value]
    msg = f"{value!r} is not a known {what} name or a non-negative code"
    raise InvalidArgument(msg)


def cids(
    *,
    codecs: SearchStrategy[str | int] | None = None,
    hashes: SearchStrategy[str | int] | None = None,
    versions: SearchStrategy[int] | None = None,
) -> SearchStrategy[CID]:
    """CIDs with random digests (they name no particular data).

    Digests have the natural length of their hash function (any length from
    0 to 64 bytes for identity and unknown functions).

    Args:
        codecs: Content codecs, by multicodec name or code. Default: raw,
            dag-pb, dag-cbor, dag-json.
        hashes: Multihash functions, by name or code. Default: sha2-256,
            sha2-512, blake2b-256, identity.
        versions: 0 or 1. A drawn 0 gives a CIDv0 only when the codec is
            dag-pb and the hash sha2-256; otherwise a CIDv1 is drawn.
            Default: both.

    Raises:
        InvalidArgument: On first draw, if an argument is not a strategy or
            draws an unknown name or a bad version.
    """

    def build() -> SearchStrategy[CID]:
        codec_s = _default_codecs() if codecs is None else codecs
        hash_s = (
            st.sampled_from(["sha2-256", "sha2-512", "blake2b-256", "identity"])
            if hashes is None
            else hashes
        )
        version_s = st.sampled_from([0, 1]) if versions is None else versions
        _check_strategy(codec_s, "codecs")
        _check_strategy(hash_s, "hashes")
        _check_strategy(version_s, "versions")

        @st.composite
        def draw_cid(draw: st.DrawFn) -> CID:
            codec = _code(draw(codec_s), CODECS, "codec")
            code = _code(draw(hash_s), HASHES, "hash function")
            version = draw(version_s)
            if version not in (0, 1):
                msg = f"versions drew {version!r}; CID versions are 0 and 1"
                raise InvalidArgument(msg)
            size = _DIGEST_SIZES.get(code)
            digest = draw(
                st.binary(min_size=0, max_size=64)
                if size is None
                else st.binary(min_size=size, max_size=size)
            )
            mh = Multihash(code, digest)
            if (
                version == 0
                and codec == CODECS["dag-pb"]
                and code == HASHES["sha2-256"]
            ):
                return CID.create(0, codec, mh)
            return CID.create(1, codec, mh)

        return draw_cid()

    return _deferred(build)


def blocks(
    *,
    data: SearchStrategy[bytes] | None = None,
    codecs: SearchStrategy[str | int] | None = None,
    hashes: SearchStrategy[str | int] | None = None,
    versions: SearchStrategy[int] | None = None,
) -> SearchStrategy[Block]:
    """Blocks whose CID is the real hash of their data.

    The data is not encoded in the CID's codec: a CAR does not care.

    Args:
        data: The block bytes. Default: up to 1 KiB.
        codecs: Content codecs, by name or code. Default: raw, dag-pb,
            dag-cbor, dag-json.
        hashes: Hash functions carmigrate can compute, by name or code.
            Default: sha2-256, sha2-512, blake2b-256, identity.
        versions: 0 or 1 (CIDv0 only for dag-pb with sha2-256, as in
            [cids][carmigrate.testing.strategies.cids]). Default: both.

    Raises:
        InvalidArgument: On first draw, for an argument that is not a
            strategy, or an unknown name, unsupported hash or bad version.
    """

    def build() -> SearchStrategy[Block]:
        data_s = st.binary(max_size=1024) if data is None else data
        codec_s = _default_codecs() if codecs is None else codecs
        hash_s = (
            st.sampled_from(["sha2-256", "sha2-512", "blake2b-256", "identity"])
            if hashes is None
            else hashes
        )
        version_s = st.sampled_from([0, 1]) if versions is None else versions
        for value, name in (
            (data_s, "data"),
            (codec_s, "codecs"),
            (hash_s, "hashes"),
            (version_s, "versions"),
        ):
            _check_strategy(value, name)

        @st.composite
        def draw_block(draw: st.DrawFn) -> Block:
            payload = bytes(draw(data_s))
            codec = _code(draw(codec_s), CODECS, "codec")
            code = _code(draw(hash_s), HASHES, "hash function")
            version = draw(version_s)
            if version not in (0, 1):
                msg = f"versions drew {version!r}; CID versions are 0 and 1"
                raise InvalidArgument(msg)
            if version == 0 and (
                codec != CODECS["dag-pb"] or code != HASHES["sha2-256"]
            ):
                version = 1
            try:
                cid = CID.from_data(payload, codec=codec, hash=code, version=version)
            except FormatError as exc:
                msg = f"hashes drew a hash function carmigrate cannot compute: {exc}"
                raise InvalidArgument(msg) from None
            return Block(cid, payload)

        return draw_block()

    return _deferred(build)


def car_bytes(
    *,
    version: Literal[1, 2] | None = None,
    blocks: SearchStrategy[Block] | None = None,
    min_blocks: int = 0,
    max_blocks: int | None = 10,
    max_roots: int = 3,
) -> SearchStrategy[bytes]:
    """Well-formed CAR files, as bytes, written by [CarWriter][carmigrate.car.CarWriter].

    Roots are drawn from the blocks' CIDs. A CARv2 gets either index
    format or none, with or without identity CIDs in the index.

    Args:
        version: 1, 2, or ``None`` for either.
        blocks: The blocks, in file order (duplicates allowed). Default:
            [blocks()][carmigrate.testing.strategies.blocks].
        min_blocks: Fewest blocks.
        max_blocks: Most blocks, or ``None`` for no bound.
        max_roots: Most roots (the header may also have none).

    Raises:
        InvalidArgument: On first draw, for a bad version, sizes or a
            ``blocks`` that is not a strategy.
    """
    # The parameter shadows the strategy of the same name, as in Hypothesis'
    # own ``lists(elements)`` style; keep a reference to the function.
    block_fn = _blocks_strategy

    def build() -> SearchStrategy[bytes]:
        if version not in (None, 1, 2):
            msg = f"version={version!r} must be 1, 2 or None"
            raise InvalidArgument(msg)
        _check_size(min_blocks, "min_blocks")
        _check_size(max_blocks, "max_blocks", allow_none=True)
        _check_size(max_roots, "max_roots")
        if max_blocks is not None and max_blocks < min_blocks:
            msg = f"max_blocks={max_blocks} is less than min_blocks={min_blocks}"
            raise InvalidArgument(msg)
        block_s = block_fn() if blocks is None else blocks
        _check_strategy(block_s, "blocks")

        @st.composite
        def draw_car(draw: st.DrawFn) -> bytes:
            items = draw(st.lists(block_s, min_size=min_blocks, max_size=max_blocks))
            v = draw(st.sampled_from([1, 2])) if version is None else version
            pool = [b.cid for b in items]
            roots = (
                draw(st.lists(st.sampled_from(pool), max_size=max_roots))
                if pool and max_roots
                else []
            )
            out = io.BytesIO()
            if v == 1:
                writer = CarWriter(out, roots, version=1)
            else:
                codec = draw(
                    st.sampled_from([MULTIHASH_INDEX_SORTED, INDEX_SORTED, None])
                )
                identity = draw(st.booleans())
                writer = CarWriter(
                    out,
                    roots,
                    version=2,
                    index_codec=codec,
                    store_identity_cids=identity,
                )
            with writer:
                for b in items:
                    writer.write(b.cid, b.data)
            return out.getvalue()

        return draw_car()

    return _deferred(build)


_blocks_strategy = blocks


@attrs.frozen
class Corruption:
    """A CAR broken on purpose, and where a reader must notice.

    Attributes:
        data: The corrupted CAR bytes.
        how: Which corruption (one of
            [CORRUPTIONS][carmigrate.testing.strategies.CORRUPTIONS]).
        offset: The offset the error must name.
        error: The error class a reader must raise (or
            [verify_car][carmigrate.car.verify_car] must report).
    """

    data: bytes
    how: str
    offset: int
    error: type[CarFormatError]


def corrupt_car(
    data: bytes,
    *,
    how: Literal["flip-data", "truncate", "section-length", "header-length"],
    block: int = 0,
) -> Corruption:
    """Break a well-formed CAR in a chosen way and say where it must be caught.

    - ``"flip-data"``: invert one byte in the data of the first block at or
      after index ``block`` that has data. Verification must report
      [BlockHashMismatch][carmigrate.errors.BlockHashMismatch] at that
      block's data offset.
    - ``"truncate"``: cut the file in the middle of section ``block``.
      Readers must raise [CarFormatError][carmigrate.errors.CarFormatError]
      at that section's offset.
    - ``"section-length"``: make section ``block`` declare 2**62 bytes.
      Readers must raise [LimitExceeded][carmigrate.errors.LimitExceeded] at
      that section's offset.
    - ``"header-length"``: make the first length prefix of the file (the
      CARv1 header, or the CARv2 pragma) declare 2**62 bytes. Readers must
      raise [LimitExceeded][carmigrate.errors.LimitExceeded] at offset 0.

    Args:
        data: A well-formed CAR.
        how: Which corruption.
        block: Index of the block (section) to corrupt; not used for
            ``"header-length"``.

    Raises:
        InvalidArgument: For an unknown ``how``, a ``block`` out of range or
            with nothing to flip, or ``data`` that is not a well-formed CAR.
    """
    if how not in CORRUPTIONS:
        msg = f"how={how!r} must be one of {', '.join(CORRUPTIONS)}"
        raise InvalidArgument(msg)
    if how == "header-length":
        _, end = _first_varint(data)
        return Corruption(encode_varint(_HUGE) + data[end:], how, 0, LimitExceeded)
    try:
        reader = CarBlockReader(data)
        locs = list(reader.locations())
    except FormatError as exc:
        msg = f"data must be a well-formed CAR: {exc}"
        raise InvalidArgument(msg) from None
    if (
        isinstance(block, bool)
        or not isinstance(block, int)
        or not 0 <= block < len(locs)
    ):
        msg = f"block={block!r} is out of range for a CAR of {len(locs)} blocks"
        raise InvalidArgument(msg)
    loc = locs[block]
    if how == "flip-data":
        target = next((x for x in locs[block:] if x.length), None)
        if target is None:
            msg = f"no block at or after index {block} has data to flip"
            raise InvalidArgument(msg)
        i = target.offset + target.length // 2
        flipped = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
        return Corruption(flipped, how, target.offset, BlockHashMismatch)
    if how == "truncate":
        return Corruption(
            data[: loc.section_offset + loc.section_length // 2],
            how,
            loc.section_offset,
            CarFormatError,
        )
    _, end = _first_varint(data, loc.section_offset)
    prefix = encode_varint(_HUGE)
    broken = data[: loc.section_offset] + prefix + data[end:]
    v2 = reader.header.v2
    if v2 is not None:
        # Keep the CARv2 header consistent with the longer prefix, so that the
        # only fault is the section length.
        grow = len(prefix) - (end - loc.section_offset)
        index_offset = v2.index_offset + grow if v2.index_offset else 0
        fixed = CarV2Header(
            v2.data_offset, v2.data_size + grow, index_offset, v2.characteristics
        )
        broken = broken[: len(PRAGMA)] + fixed.encode() + broken[len(PRAGMA) + 40 :]
    return Corruption(broken, how, loc.section_offset, LimitExceeded)


def _first_varint(data: bytes, at: int = 0) -> tuple[int, int]:
    value = shift = 0
    i = at
    while i < len(data):
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
    msg = f"data has no complete varint at offset {at}"
    raise InvalidArgument(msg)


def corruptions(
    *,
    cars: SearchStrategy[bytes] | None = None,
    hows: SearchStrategy[str] | None = None,
) -> SearchStrategy[Corruption]:
    """Broken CARs, made by [corrupt_car][carmigrate.testing.strategies.corrupt_car].

    Args:
        cars: Well-formed CARs to break. Default: ``car_bytes(min_blocks=1)``
            with at least one non-empty block.
        hows: Corruptions to apply, from
            [CORRUPTIONS][carmigrate.testing.strategies.CORRUPTIONS]. Default:
            all of them.

    Raises:
        InvalidArgument: On first draw, if an argument is not a strategy or
            draws an unknown corruption.
    """

    def build() -> SearchStrategy[Corruption]:
        car_s = (
            car_bytes(
                min_blocks=1,
                blocks=_blocks_strategy(data=st.binary(min_size=1, max_size=512)),
            )
            if cars is None
            else cars
        )
        how_s = st.sampled_from(CORRUPTIONS) if hows is None else hows
        _check_strategy(car_s, "cars")
        _check_strategy(how_s, "hows")

        @st.composite
        def draw_corruption(draw: st.DrawFn) -> Corruption:
            car = draw(car_s)
            how = draw(how_s)
            if how not in CORRUPTIONS:
                msg = f"hows drew {how!r}; expected one of {', '.join(CORRUPTIONS)}"
                raise InvalidArgument(msg)
            lengths = [loc.length for loc in CarBlockReader(car).locations()]
            candidates = [i for i, n in enumerate(lengths) if n or how != "flip-data"]
            if not candidates:
                # Nothing to flip or cut: every CAR has a header to break.
                return corrupt_car(car, how="header-length")
            index = draw(st.sampled_from(candidates))
            return corrupt_car(car, how=how, block=index)  # type: ignore[arg-type]

        return draw_corruption()

    return _deferred(build)


def _valid_key(key: str, max_length: int) -> bool:
    try:
        validate_key(key, max_length=max_length)
    except InvalidKey:
        return False
    return True


def store_keys(
    *,
    max_segments: int = 4,
    max_length: int = DEFAULT_MAX_KEY_LENGTH,
    alphabet: SearchStrategy[str] | None = None,
) -> SearchStrategy[str]:
    """Valid object keys: what every [Store][carmigrate.storage.Store] must accept.

    ``/``-separated segments of printable characters (any script, spaces,
    dots and dashes included), never empty, ``.`` or ``..``, no control
    characters, at most ``max_length`` UTF-8 bytes: each key drawn passes
    ``carmigrate.storage.lowlevel.validate_key``.

    Args:
        max_segments: Folder depth at most (segments per key).
        max_length: Longest key in UTF-8 bytes.
        alphabet: Characters of the segments (default: printable Unicode
            without ``/`` and without surrogates).
    """

    def build() -> SearchStrategy[str]:
        _check_size(max_segments, "max_segments")
        _check_size(max_length, "max_length")
        if max_segments < 1 or max_length < 1:
            raise InvalidArgument("max_segments and max_length must be at least 1")
        chars = alphabet or st.characters(
            blacklist_categories=("Cc", "Cs", "Co", "Cn"), blacklist_characters="/"
        )
        segment = st.text(chars, min_size=1, max_size=24).filter(
            lambda x: x not in (".", "..")
        )
        return (
            st.lists(segment, min_size=1, max_size=max_segments)
            .map("/".join)
            .filter(lambda k: _valid_key(k, max_length))
        )

    return _deferred(build)


def register_type_strategies() -> None:
    """Let ``st.from_type`` build carmigrate's values: ``CID`` and ``Multihash``.

    Hypothesis calls this through the ``hypothesis`` entry point of the
    ``carmigrate`` package when it is imported (set
    ``HYPOTHESIS_NO_PLUGINS`` to skip plugins); calling it again does
    nothing new.
    """
    st.register_type_strategy(CID, cids())
    st.register_type_strategy(Multihash, cids().map(lambda c: c.multihash))
