"""Verification: re-hash every block of a CAR and check its structure and index."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections import deque
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any, BinaryIO, Final, cast

import attrs

from carmigrate.car._limits import DEFAULT_LIMITS, CarLimits
from carmigrate.car._scan import (
    check_end,
    describe_bad_cid,
    open_input,
    read_checked_index,
    section_length,
    truncated,
    zero_length,
)
from carmigrate.cid import CID, HashCheck
from carmigrate.cid.lowlevel import SHA256_RANGES_NATIVE, sha256_ranges
from carmigrate.errors import (
    BlockHashMismatch,
    CarFormatError,
    FormatError,
    LimitExceeded,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sized

    from carmigrate.car._input import Input, Source

__all__ = ["VerifyResult", "read_region", "verify_car"]

_SHA256: Final = 0x12
_THREADED_MIN: Final = 128 << 10
_BATCH_BLOCKS: Final = 1024
_BATCH_BYTES: Final = 32 << 20
_WHOLE_IN_BATCH: Final = 64 << 20


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


# Hashing in a worker thread only pays when another core can read meanwhile.
_PARALLEL = _cpus() > 1


@attrs.frozen
class VerifyResult:
    """What [verify_car][carmigrate.car.verify_car] found.

    Counts cover the blocks read before verification stopped: at a
    structural error, at the first mismatch (unless all mismatches were
    asked for), or at the end of the data.

    Attributes:
        version: The CAR version, or ``None`` if the header could not be read.
        roots: The root CIDs (empty if the header could not be read).
        blocks: Blocks read.
        bytes: Bytes of block data read.
        verified: Blocks whose data hashes to their CID.
        unverifiable: Blocks whose hash function carmigrate cannot compute;
            neither verified nor mismatched.
        mismatches: The blocks whose data does not match their CID, in file
            order (at most one unless all mismatches were asked for).
        error: The structural error that stopped reading, if any.
        index_checked: Whether an embedded CARv2 index was read and checked
            against the data.
        unverifiable_hashes: Codes of the hash functions that made blocks
            unverifiable.
        first_unverifiable_offset: Data offset of the first unverifiable
            block, if any.
        sha256: The SHA-256 (hex) of every byte of the source, read to its
            end whatever verification found, when ``verify_car`` was asked
            for it with ``sha256=True``; the digest of the CAR's own CID
            (codec ``car``). ``None`` otherwise.
    """

    version: int | None
    roots: tuple[CID, ...]
    blocks: int
    bytes: int
    verified: int
    unverifiable: int
    mismatches: tuple[BlockHashMismatch, ...]
    error: CarFormatError | None
    index_checked: bool
    unverifiable_hashes: frozenset[int]
    first_unverifiable_offset: int | None
    sha256: str | None = None

    @property
    def ok(self) -> bool:
        """Well-formed and no block mismatches its CID (unverifiable blocks allowed)."""
        return self.error is None and not self.mismatches

    @property
    def fully_verified(self) -> bool:
        """[ok][carmigrate.car.VerifyResult.ok] and every block was actually verified."""
        return self.ok and self.unverifiable == 0

    @property
    def first_failure(self) -> CarFormatError | None:
        """The earliest problem: the first mismatch, else the structural error, else ``None``."""
        return self.mismatches[0] if self.mismatches else self.error

    def raise_for_failure(self) -> None:
        """Raise [first_failure][carmigrate.car.VerifyResult.first_failure] if there is one.

        Raises:
            BlockHashMismatch: For the first block that does not match.
            CarFormatError: For the structural error.
        """
        failure = self.first_failure
        if failure is not None:
            raise failure


class _Batch:
    """Hashes the sha2-256 blocks of an in-memory CAR in few calls.

    Blocks are collected in file order and settled (hashed with
    ``sha256_ranges``, compared and counted) together: when
    ``_BATCH_BLOCKS`` blocks or ``_BATCH_BYTES`` bytes are pending, before a
    block that is checked another way, at a structural error and at the end,
    so counts and the first mismatch are the same as hashing each block as
    it is read, and memory stays bounded. The whole buffer's digest, if
    asked for, joins the first settlement when the buffer is at most
    ``_WHOLE_IN_BATCH`` bytes (else ``hashlib`` hashes it at the end).
    """

    __slots__ = (
        "all_mismatches",
        "items",
        "mv",
        "pending_bytes",
        "tally",
        "whole",
        "whole_digest",
    )

    def __init__(
        self, mv: memoryview, tally: _Tally, *, all_mismatches: bool, whole: bool
    ) -> None:
        self.mv = mv
        self.tally = tally
        self.all_mismatches = all_mismatches
        self.items: list[tuple[int, int, int]] = []  # (data start, end, CID start)
        self.pending_bytes = 0
        self.whole = whole and len(mv) <= _WHOLE_IN_BATCH
        self.whole_digest: bytes | None = None

    def add(self, start: int, end: int, body: int) -> None:
        self.items.append((start, end, body))
        self.pending_bytes += end - start
        if len(self.items) >= _BATCH_BLOCKS or self.pending_bytes >= _BATCH_BYTES:
            self.settle()

    def settle(self) -> None:
        items = self.items[:]
        self.items.clear()
        self.pending_bytes = 0
        ranges = [(start, end - start) for start, end, _ in items]
        if self.whole:
            ranges.append((0, len(self.mv)))
        if not ranges:
            return
        digests = sha256_ranges(self.mv, ranges)
        if self.whole:
            self.whole_digest = digests.pop()
            self.whole = False
        mv, tally = self.mv, self.tally
        for (start, end, body), got in zip(items, digests, strict=True):
            tally.blocks += 1
            tally.bytes += end - start
            if got == mv[start - 32 : start]:
                tally.verified += 1
                continue
            tally.mismatch(CID.read(mv, body)[0], start, stop=not self.all_mismatches)


class _Hashing(io.RawIOBase):
    """A stream that hashes every byte read from it (``verify_car(sha256=True)``).

    It does not seek, so the reader reads through what it would skip.
    """

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self._stream = stream
        self._readinto = getattr(stream, "readinto", None)
        self.hasher = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._readinto is not None:
            n = self._readinto(view) or 0
        else:
            data = self._stream.read(len(view))
            if not data:
                return 0
            n = len(data)
            if n > len(view):
                msg = f"read({len(view)}) returned {n} bytes"
                raise OSError(msg)
            view[:n] = data
        if n:
            self.hasher.update(view[:n])
        return n

    def drain(self) -> str:
        """Read to the end of the stream; the hex digest of all it gave."""
        buffer = bytearray(1 << 20)
        while self.readinto(buffer):
            pass
        return self.hasher.hexdigest()


def read_region(stream: BinaryIO, start: int, size: int) -> bytes:
    """Read up to ``size`` bytes at absolute ``start`` of a seekable stream."""
    stream.seek(start)
    chunks = []
    left = size
    while left > 0:
        chunk = stream.read(min(left, 8 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class _Tally:
    __slots__ = (
        "blocks",
        "bytes",
        "complete",
        "first_unverifiable",
        "mismatches",
        "sections",
        "unverifiable",
        "unverifiable_hashes",
        "verified",
    )

    def __init__(self) -> None:
        self.blocks = 0
        self.bytes = 0
        self.verified = 0
        self.unverifiable = 0
        self.mismatches: list[BlockHashMismatch] = []
        self.unverifiable_hashes: set[int] = set()
        self.sections: list[tuple[int, bytes, int]] | None = None
        self.complete = False
        self.first_unverifiable: int | None = None

    def mismatch(self, cid: object, offset: int, *, stop: bool) -> None:
        """Record a block that does not match ``cid``; raise ``_Stop`` if ``stop``."""
        self.mismatches.append(BlockHashMismatch(str(cid), offset=offset))
        if stop:
            raise _Stop


class _Stop(Exception):
    """The first mismatch was found and verification stops there."""


class _Pipeline:
    """Hashes large blocks in a worker thread while the next bytes are read.

    One worker takes views from a queue and returns digests in the same order,
    so results are settled in file order and counts and the first mismatch
    are the same as with hashing inline. Items keep views into the reader's
    buffers; the reader calls ``settle_buffer`` before it overwrites one.
    """

    __slots__ = ("all_mismatches", "items", "results", "tally", "tasks", "thread")

    def __init__(self, tally: _Tally, *, all_mismatches: bool) -> None:
        self.tally = tally
        self.all_mismatches = all_mismatches
        self.items: deque[tuple[bytes, bytearray, bytes, int, int]] = deque()
        self.tasks: SimpleQueue[memoryview | None] = SimpleQueue()
        self.results: SimpleQueue[bytes | BaseException] = SimpleQueue()
        self.thread: threading.Thread | None = None

    def _work(self) -> None:
        tasks, results, sha256 = self.tasks, self.results, hashlib.sha256
        while (view := tasks.get()) is not None:
            try:
                results.put(sha256(view).digest())
            except BaseException as exc:
                results.put(exc)

    def submit(
        self,
        buf: bytearray,
        view: memoryview,
        digest: bytes,
        cid_bytes: bytes,
        offset: int,
    ) -> None:
        if self.thread is None:
            self.thread = threading.Thread(
                target=self._work, name="carmigrate-verify", daemon=True
            )
            self.thread.start()
        self.items.append((digest, buf, cid_bytes, offset, len(view)))
        self.tasks.put(view)

    def settle(self, upto: int | None = None) -> None:
        items = self.items
        tally = self.tally
        results = self.results
        for _ in range(len(items) if upto is None else upto):
            digest, _buf, cid_bytes, offset, size = items.popleft()
            got = results.get()
            if isinstance(got, BaseException):
                raise got
            tally.blocks += 1
            tally.bytes += size
            if got == digest:
                tally.verified += 1
            else:
                tally.mismatch(
                    CID.from_bytes(cid_bytes), offset, stop=not self.all_mismatches
                )

    def settle_buffer(self, buf: bytearray) -> None:
        last = -1
        for i, item in enumerate(self.items):
            if item[1] is buf:
                last = i
        if last >= 0:
            self.settle(last + 1)

    def close(self) -> None:
        # Wait for the worker, discarding what is left (after a stop or error).
        if self.thread is not None:
            self.tasks.put(None)
            self.thread.join()
            self.thread = None
        self.items.clear()


def _scan(
    inp: Input,
    limits: CarLimits,
    tally: _Tally,
    *,
    all_mismatches: bool,
    zero_eof: bool,
    data_offset: int,
    batch: _Batch | None = None,
    hash_thread: bool = False,
) -> None:
    # The hot loop, with the section framing of ``frames`` inlined (a
    # generator per block costs a fifth of the time for small blocks). Blocks
    # whose CID is CIDv1 with a one-byte codec and a 32-byte sha2-256 digest,
    # or CIDv0, are checked without building a CID object: hashlib over a view
    # of the read buffer, compared with the digest bytes in place; large ones
    # are hashed in a worker thread while the next bytes are read. Everything
    # else goes through CID.read and CID.check.
    sha256 = hashlib.sha256
    read = CID.read
    sections = tally.sections
    max_section = limits.max_section_size
    pipeline = None
    if inp.stream is not None and hash_thread:
        pipeline = _Pipeline(tally, all_mismatches=all_mismatches)
        inp.on_reuse = pipeline.settle_buffer
    pending: Sized = pipeline.items if pipeline is not None else ()
    settle: Callable[[], None] | None = (
        pipeline.settle if pipeline is not None else None
    )
    add = None
    if batch is not None:
        pending, settle, add = batch.items, batch.settle, batch.add
    threaded_min = _THREADED_MIN if pipeline is not None else 1 << 63
    blocks = nbytes = verified = 0
    buf = inp.buf
    mv = inp.mv
    pos = inp.pos
    fill = inp.fill
    try:
        try:
            low = fill - 10
            while True:
                if pos > low:
                    inp.pos = pos
                    avail = inp.need(10)
                    buf, mv, pos, fill = inp.buf, inp.mv, inp.pos, inp.fill
                    low = fill - 10
                    if avail == 0:
                        check_end(inp)
                        break
                b = buf[pos]
                if b < 0x80:
                    if b == 0:
                        if zero_eof:
                            break
                        raise zero_length(inp.base + pos)
                    ln = b
                    body = pos + 1
                else:
                    b1 = buf[pos + 1] if pos + 1 < fill else 0x80
                    if 0 < b1 < 0x80:
                        ln = (b & 0x7F) | (b1 << 7)
                        body = pos + 2
                    else:
                        ln, body = section_length(inp, pos)
                if ln > max_section:
                    raise LimitExceeded(
                        "section", limit=max_section, actual=ln, offset=inp.base + pos
                    )
                end = body + ln
                if end > fill:
                    inp.pos = pos
                    inp.need(end - pos)
                    shift = inp.pos - pos
                    buf, mv, pos, fill = inp.buf, inp.mv, inp.pos, inp.fill
                    low = fill - 10
                    body += shift
                    end += shift
                    if end > fill:
                        raise truncated(inp, inp.base + pos, ln, fill - body)
                start = pos
                pos = end
                if (
                    ln >= 36
                    and buf[body] == 1
                    and buf[body + 2] == _SHA256
                    and buf[body + 3] == 32
                    and buf[body + 1] < 0x80
                ):
                    dstart = body + 36
                elif ln >= 34 and buf[body] == _SHA256 and buf[body + 1] == 32:
                    dstart = body + 34
                else:
                    dstart = 0
                if dstart:
                    digest = buf[dstart - 32 : dstart]
                    if sections is not None:
                        sections.append(
                            (_SHA256, bytes(digest), inp.base + start - data_offset)
                        )
                    if add is not None:
                        add(dstart, end, body)
                        continue
                    if end - dstart >= threaded_min:
                        assert pipeline is not None
                        assert isinstance(buf, bytearray)
                        pipeline.submit(
                            buf,
                            mv[dstart:end],
                            bytes(digest),
                            bytes(buf[body:dstart]),
                            inp.base + dstart,
                        )
                        continue
                    if pending:
                        settle()  # type: ignore[misc]
                    if sha256(mv[dstart:end]).digest() == digest:
                        blocks += 1
                        verified += 1
                        nbytes += end - dstart
                        continue
                    cid = read(buf, body)[0]
                    result = HashCheck.MISMATCH
                else:
                    if pending:
                        settle()  # type: ignore[misc]
                    try:
                        cid, dstart = read(buf, body)
                    except FormatError:
                        dstart = end + 1
                    if dstart > end:
                        raise CarFormatError(
                            describe_bad_cid(bytes(buf[body:end])),
                            offset=inp.base + body,
                        )
                    if sections is not None:
                        sections.append(
                            (cid.hash_code, cid.digest, inp.base + start - data_offset)
                        )
                    result = cid.check(mv[dstart:end])
                blocks += 1
                nbytes += end - dstart
                if result is HashCheck.VERIFIED:
                    verified += 1
                elif result is HashCheck.UNVERIFIABLE:
                    if tally.first_unverifiable is None:
                        tally.first_unverifiable = inp.base + dstart
                    tally.unverifiable += 1
                    tally.unverifiable_hashes.add(cid.hash_code)
                else:
                    tally.mismatch(cid, inp.base + dstart, stop=not all_mismatches)
        except CarFormatError:
            # Blocks before the error still count, and an earlier mismatch wins.
            if settle is not None:
                settle()
            raise
        if settle is not None:
            settle()
        tally.complete = True
    except _Stop:
        pass
    finally:
        inp.pos = pos
        if pipeline is not None:
            pipeline.close()
            inp.on_reuse = None
        tally.blocks += blocks
        tally.bytes += nbytes
        tally.verified += verified


def verify_car(
    source: Source,
    *,
    all_mismatches: bool = False,
    check_index: bool = True,
    limits: CarLimits = DEFAULT_LIMITS,
    zero_length_section_as_eof: bool = False,
    sha256: bool = False,
    hash_thread: bool | None = None,
) -> VerifyResult:
    """Re-hash every block of a CAR and check that the file is well-formed.

    Reads ``source`` once, forward, with memory bounded by ``limits`` (plus
    a read buffer), whatever the file size. Structural problems and limit
    breaches are not raised but returned in
    [VerifyResult.error][carmigrate.car.VerifyResult]; call
    [raise_for_failure][carmigrate.car.VerifyResult.raise_for_failure] to
    turn the result into an exception.

    If the CAR is a CARv2 with an index, the index is read after the data
    (reading on forward, so any stream works) and checked against it: every
    entry must point at a section with that multihash, and every section (but
    identity CIDs, unless the file is fully indexed) must have an entry. A
    wrong index is a [CarFormatError][carmigrate.errors.CarFormatError] in
    ``error``. Checking keeps one small record per block in memory.

    Large blocks of a stream are hashed in a worker thread while the next
    bytes are read (by default when more than one CPU is available). The blocks of an in-memory CAR
    are hashed in batches with [sha256_ranges][carmigrate.cid.lowlevel.sha256_ranges]
    where it has its compiled form. Either way the results are the same as
    hashing in order.

    Args:
        source: A binary stream (need not be seekable) or an in-memory buffer.
        all_mismatches: Keep reading after a block that does not match its
            CID, collecting every mismatch. By default verification stops at
            the first one.
        check_index: Read and check an embedded CARv2 index.
        limits: Caps on header and section lengths.
        zero_length_section_as_eof: Treat a zero-length section as the end of
            the data (go-car's ``ZeroLengthSectionAsEOF``); an error otherwise.
        sha256: Also compute the SHA-256 of the whole source (the digest a
            CAR's own CID names) in the same pass, into
            [VerifyResult.sha256][carmigrate.car.VerifyResult]. The source is
            then read to its end even when verification stops early, and a
            stream is read through rather than seeked over. For an in-memory
            CAR it is computed alongside the block hashes, two streams at a
            time where [sha256_ranges][carmigrate.cid.lowlevel.sha256_ranges] can.
        hash_thread: Hash a stream's large blocks in a worker thread while
            the next bytes are read. ``None`` (the default) does so when more
            than one CPU is available; a caller that already reads the bytes
            in another thread can save the thread and its hand-overs with
            ``False``.

    Returns:
        The counts, the mismatches, any structural error and, if asked, the
        whole source's SHA-256.

    Raises:
        OSError: If reading ``source`` fails.
    """
    tally = _Tally()
    version: int | None = None
    roots: tuple[CID, ...] = ()
    error: CarFormatError | None = None
    index_checked = False
    in_memory = isinstance(source, bytes | bytearray | memoryview)
    hashing: _Hashing | None = None
    batch: _Batch | None = None
    if sha256 and not in_memory:
        hashing = _Hashing(cast("BinaryIO", source))
        source = cast("BinaryIO", hashing)
    try:
        inp, header = open_input(source, limits)
        version, roots = header.version, header.roots
        v2 = header.v2
        want_index = check_index and v2 is not None and v2.has_index
        if want_index:
            tally.sections = []
        if in_memory and SHA256_RANGES_NATIVE:
            batch = _Batch(inp.mv, tally, all_mismatches=all_mismatches, whole=sha256)
        _scan(
            inp,
            limits,
            tally,
            all_mismatches=all_mismatches,
            zero_eof=zero_length_section_as_eof,
            data_offset=header.data_offset,
            batch=batch,
            hash_thread=_PARALLEL if hash_thread is None else hash_thread,
        )
        if want_index and tally.complete:
            assert v2 is not None
            assert tally.sections is not None
            read_checked_index(inp, v2, tally.sections)
            index_checked = True
    except CarFormatError as exc:
        error = exc
    digest = None
    if sha256:
        if hashing is not None:
            digest = hashing.drain()
        elif batch is not None and batch.whole_digest is not None:
            digest = batch.whole_digest.hex()
        else:  # in memory: hashlib takes any contiguous buffer
            digest = hashlib.sha256(cast("bytes", source)).hexdigest()
    return VerifyResult(
        version=version,
        roots=roots,
        blocks=tally.blocks,
        bytes=tally.bytes,
        verified=tally.verified,
        unverifiable=tally.unverifiable,
        mismatches=tuple(tally.mismatches),
        error=error,
        index_checked=index_checked,
        unverifiable_hashes=frozenset(tally.unverifiable_hashes),
        first_unverifiable_offset=tally.first_unverifiable,
        sha256=digest,
    )
