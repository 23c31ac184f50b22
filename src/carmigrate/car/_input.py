"""A forward-only buffered view of a binary stream or an in-memory buffer.

The CAR parsers index into one reusable ``bytearray`` and slice it with
``memoryview`` so that block data is hashed where it was read, without a copy.
Reads use ``readinto`` with as much room as the buffer has, so a regular file
is read in chunks of up to a few MiB; a pipe or socket that returns short
reads works too. Absolute positions count from where reading began.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, BinaryIO, Final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Input", "Source"]

Source = BinaryIO | bytes | bytearray | memoryview

_INITIAL: Final = 64 << 10
_MIN_TARGET: Final = 256 << 10
_MAX_TARGET: Final = 8 << 20
_PIECE: Final = 1 << 20


class Input:
    """Buffered, forward-only reader with absolute positions.

    State: ``buf`` holds bytes ``[base, base + fill)`` of the input; ``pos``
    is the index of the next unread byte. Readers index ``buf`` directly and
    call ``need`` before going past ``fill``. ``need`` may move the unread
    bytes to the front of the buffer (changing ``pos``, ``fill`` and
    ``base``) or into another buffer, so indexes taken before a call to it
    are stale afterwards.

    A consumer that hands views of ``buf`` to another thread sets
    ``on_reuse``: ``need`` then alternates between two buffers and calls
    ``on_reuse(buffer)`` before it overwrites a buffer that views may still
    point into.
    """

    __slots__ = (
        "_read",
        "_readinto",
        "_size",
        "_spare",
        "_stash",
        "_target",
        "base",
        "buf",
        "eof",
        "fill",
        "limit",
        "limited",
        "mv",
        "on_reuse",
        "pos",
        "stream",
    )

    def __init__(self, source: Source, *, max_section_size: int) -> None:
        self.base = 0
        self.pos = 0
        self.limit: int | None = None
        self.limited = False
        self._size: int | None = None
        self._spare: bytearray | None = None
        self._stash = b""
        self.on_reuse: Callable[[bytearray], None] | None = None
        # The buffer grows towards this size while data keeps coming, so that
        # large blocks are read many at a time; it is bounded by the limits.
        self._target = min(_MAX_TARGET, max(_MIN_TARGET, 2 * max_section_size))
        if isinstance(source, bytes | bytearray | memoryview):
            mv = memoryview(source)
            if mv.format != "B" or mv.ndim != 1:
                mv = mv.cast("B")
            self.stream: BinaryIO | None = None
            self.buf: bytes | bytearray | memoryview = (
                source
                if isinstance(source, bytes | bytearray) and mv.format == "B"
                else mv
            )
            self.mv = mv
            self.fill = len(mv)
            self.eof = True
            self._readinto = None
            self._read = None
            return
        self.stream = source
        self._readinto = getattr(source, "readinto", None)
        self._read = source.read
        self.buf = bytearray(_INITIAL)
        self.mv = memoryview(self.buf)
        self.fill = 0
        self.eof = False

    # -- positions -----------------------------------------------------------

    def tell(self) -> int:
        """Absolute position of the next unread byte."""
        return self.base + self.pos

    def set_limit(self, end: int) -> None:
        """Never read past absolute position ``end`` (the end of a CARv2 payload).

        Bytes already buffered beyond ``end`` are set aside and come back
        after [lift_limit][carmigrate.car._input.Input.lift_limit].
        """
        self.limit = end
        over = self.base + self.fill - end
        if over > 0:
            keep = max(self.pos, self.fill - over)
            if self.stream is not None:
                self._stash = bytes(self.mv[keep : self.fill]) + self._stash
            self.fill = keep
            self.limited = True

    def lift_limit(self) -> None:
        """Allow reading past the limit again (to reach a CARv2 index)."""
        self.limit = None
        self.limited = False
        if self.stream is None:
            self.fill = len(self.mv)

    # -- reading -------------------------------------------------------------

    def need(self, n: int) -> int:
        """Make ``n`` bytes from ``pos`` available in ``buf`` if the input has them.

        Returns:
            ``fill - pos`` afterwards: at least ``n``, or less when the input
            (or the limit) ends first.
        """
        avail = self.fill - self.pos
        if avail >= n or self.eof:
            return avail
        buf = self.buf
        assert isinstance(buf, bytearray)
        cap = len(buf)
        if self.pos + n > cap:
            # The unread bytes must move: into a larger buffer (to fit a large
            # section, or because data keeps coming), into the spare buffer,
            # or to the front of this one.
            if n > cap or cap < self._target:
                new = bytearray(max(n, min(cap * 2, self._target)))
                self._spare = None
            elif self.on_reuse is not None:
                spare = self._spare
                if spare is None:
                    spare = bytearray(cap)
                else:
                    self.on_reuse(spare)
                new = spare
                self._spare = buf
            else:
                new = buf
            if new is buf:
                self.mv[:avail] = self.mv[self.pos : self.fill]
            else:
                new[:avail] = self.mv[self.pos : self.fill]
                self.buf = new
                self.mv = memoryview(new)
            self.base += self.pos
            self.pos = 0
            self.fill = avail
        self._fill_to(n)
        return self.fill - self.pos

    def _fill_to(self, n: int) -> None:
        # Read in pieces of about _PIECE bytes (more if a section needs it), so
        # that work on what was read can overlap with the next read.
        mv = self.mv
        cap = len(mv)
        want = self.pos + n
        while self.fill < want:
            room = min(cap, max(want, self.fill + _PIECE))
            if self.limit is not None:
                room = min(room, self.limit - self.base)
                if room <= self.fill:
                    self.limited = True
                    return
            k = self._read_into(mv[self.fill : room])
            if not k:
                self.eof = True
                return
            self.fill += k

    def _read_into(self, view: memoryview) -> int:
        if self._stash:
            k = min(len(view), len(self._stash))
            view[:k] = self._stash[:k]
            self._stash = self._stash[k:]
            return k
        if self._readinto is not None:
            return self._readinto(view) or 0
        assert self._read is not None
        data = self._read(len(view))
        if not data:
            return 0
        k = len(data)
        view[:k] = data
        return k

    def take(self, n: int) -> memoryview | None:
        """Consume ``n`` bytes and return a view of them, or ``None`` if the input ends first.

        The view is valid until the next call to ``need``.
        """
        if self.need(n) < n:
            return None
        start = self.pos
        self.pos = start + n
        return self.mv[start : start + n]

    def skip(self, n: int) -> int:
        """Consume ``n`` bytes without keeping them; seek when the stream allows.

        Returns:
            The number of bytes skipped: ``n``, or less when the input (or the
            limit) ends first.
        """
        avail = self.fill - self.pos
        if n <= avail:
            self.pos += n
            return n
        if self.eof or self.stream is None:
            self.pos = self.fill
            return avail
        remaining = n - avail
        if self.on_reuse is not None:
            assert isinstance(self.buf, bytearray)
            self.on_reuse(self.buf)
        self.base += self.fill
        self.pos = self.fill = 0
        if self.limit is not None and self.base + remaining > self.limit:
            remaining = self.limit - self.base
            self.limited = True
        done = 0
        if self._stash:
            done = min(len(self._stash), remaining)
            self._stash = self._stash[done:]
            remaining -= done
        more = self._seek_forward(remaining) if remaining else 0
        if more is None:
            more = self._discard(remaining)
        done += more
        self.base += done
        return avail + done

    def _seek_forward(self, k: int) -> int | None:
        stream = self.stream
        assert stream is not None
        try:
            if not stream.seekable():
                return None
            here = stream.tell()
            if self._size is None:
                self._size = stream.seek(0, io.SEEK_END)
            target = min(here + k, self._size)
            stream.seek(target)
        except (OSError, ValueError, AttributeError):
            return None
        if target < here + k:
            self.eof = True
        return target - here

    def _discard(self, k: int) -> int:
        mv = self.mv
        done = 0
        while done < k:
            got = self._read_into(mv[: min(len(mv), k - done)])
            if not got:
                self.eof = True
                break
            done += got
        return done
