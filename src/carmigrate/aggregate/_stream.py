"""The assembled bytes of an aggregate, streamed from its pieces' payloads.

What a storage provider receives for a deal: each piece's payload at its
unpadded offset, zero-padded to its unpadded piece size, zeros in between,
and the data segment index, fr32-unpadded, at the end; ``D·127/128`` bytes in
all. Its commP is the aggregate's commitment (commp-spec §7.4).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, BinaryIO, Final, TypeAlias

from carmigrate.aggregate._index import ENTRY_SIZE
from carmigrate.commp.lowlevel import fr32_unpad
from carmigrate.errors import AggregateError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from carmigrate.aggregate._builder import Aggregate, Placement

__all__ = ["PayloadOpener", "iter_aggregate_bytes", "open_aggregate_stream"]

_CHUNK: Final = 1 << 20
_ZEROS: Final = bytes(_CHUNK)

PayloadOpener: TypeAlias = "Callable[[Placement], BinaryIO]"
"""Opens the payload of a placed piece for reading; the aggregate reader
closes the stream once it has read it."""


def _zeros(n: int) -> Iterator[bytes]:
    while n > 0:
        k = min(n, _CHUNK)
        yield _ZEROS[:k]
        n -= k


def iter_aggregate_bytes(
    aggregate: Aggregate, open_payload: PayloadOpener
) -> Iterator[bytes]:
    """Yield the aggregate's unpadded deal bytes, in chunks of at most 1 MiB.

    Args:
        aggregate: The built aggregate.
        open_payload: Called once per placed piece, in order; returns a
            readable binary stream of that piece's payload, which is closed
            after reading.

    Raises:
        AggregateError: If a payload is longer than its piece can hold.
    """
    pos = 0
    for pl in aggregate.placements:
        yield from _zeros(pl.offset_unpadded - pos)
        capacity = pl.size // 128 * 127
        n = 0
        with open_payload(pl) as f:
            while True:
                chunk = f.read(_CHUNK)
                if not chunk:
                    break
                n += len(chunk)
                if n > capacity:
                    msg = (
                        f"payload of piece {pl.position} is longer than its "
                        f"{pl.size}-byte piece can hold ({capacity} bytes)"
                    )
                    raise AggregateError(msg)
                yield chunk
        yield from _zeros(capacity - n)
        pos = pl.offset_unpadded + capacity
    yield from _zeros(aggregate.index_start // 128 * 127 - pos)
    entries = b"".join(e.to_bytes() for e in aggregate.index_entries())
    area = ENTRY_SIZE * aggregate.max_entries
    # Entries are whole quads in pairs (128 padded bytes = two entries).
    if len(entries) % 128:
        entries += bytes(ENTRY_SIZE)
    for k in range(0, len(entries), _CHUNK):
        yield fr32_unpad(entries[k : k + _CHUNK])
    yield from _zeros((area - len(entries)) // 128 * 127)


class _IteratorReader(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def open_aggregate_stream(
    aggregate: Aggregate, open_payload: PayloadOpener
) -> BinaryIO:
    """The aggregate's deal bytes as a readable binary stream.

    See [iter_aggregate_bytes][carmigrate.aggregate.iter_aggregate_bytes];
    errors surface from ``read``.
    """
    return io.BufferedReader(
        _IteratorReader(iter_aggregate_bytes(aggregate, open_payload)), _CHUNK
    )
