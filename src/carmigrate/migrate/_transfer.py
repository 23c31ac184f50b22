"""What a worker does with one item: move and check bytes, return plain facts.

Everything here runs in a worker (a thread of the coordinator, or another
process or host under Dask). A worker never writes the ledger: it returns an
[_Outcome][] (plain, picklable data) that the coordinator records.

The bytes of an object are read once. They stream into the destination's
atomic ``write`` through a generator that feeds SHA-256, the commP
hasher, every other digest the policy needs, and a CAR block verifier (in a helper thread, fed through a bounded
pipe) on the way; when the last chunk has passed, the generator compares
what it computed with every truth it was given and raises if anything
disagrees, so the write is abandoned and nothing appears under the key.
"""

from __future__ import annotations

import collections
import enum
import hashlib
import io
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO, Final

import attrs

from carmigrate.car import VerifyResult, verify_car
from carmigrate.cid import CID
from carmigrate.commp import PieceHasher
from carmigrate.digests import MultiHasher, clean_digests
from carmigrate.errors import (
    CarmigrateError,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    VerificationError,
)
from carmigrate.migrate._model import (
    Action,
    Check,
    ItemOutcome,
    ItemState,
    Overwrite,
    PlanItem,
    TransferPolicy,
    VerificationPolicy,
)
from carmigrate.storage import (
    Store,
    SupportsRestore,
    SupportsServerSideCopy,
    is_local_url,
    open_store,
)

__all__ = ["Mode", "Outcome", "StorePair", "Task", "run_task", "run_tasks"]

CHUNK: Final = 256 << 10
"""Read size, but for CARs held for their check (read whole). Measured local ->
local (1,000 x 1 MiB and 20 x 100 MiB CARs, 2 cores): 1 MiB chunks cost about
twice the kernel time of 256 KiB ones (page cache copies of large writes), and
a chunk this size stays in a core's L2 cache while it is hashed, checked and
written."""
_PIPE_DEPTH: Final = 8
_INLINE_CAR: Final = 8 << 20
"""CARs up to this size are checked in the worker's own thread once their bytes
are in (no checker thread to start and join, no hand-over per chunk: most of
the cost of a small CAR); larger ones stream through a checker thread."""
_RAW: Final = 0x55
_CAR: Final = 0x0202
_SHA256: Final = 0x12

_log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""``progress(seq, nbytes)``: more bytes of item ``seq`` went through."""


class Mode(enum.Enum):
    """What a task does."""

    COPY = "copy"  # write a new object (planned absent)
    COMPARE = "compare"  # VERIFY action: compare content, maybe replace
    REPLACE = "replace"  # CONFLICT action with overwrite allowed
    CHECK = "check"  # COPIED state: read the destination and check it
    RESTORE = "restore"  # ask for a cold object to be restored; report if ready
    VERIFY = "verify"  # post-run verification of the destination
    DELETE = "delete"  # rollback: delete what we wrote, if it is unchanged


@attrs.frozen(kw_only=True)
class Task:
    """One unit of work for a worker (plain data; pickled for remote workers)."""

    mode: Mode
    seq: int
    item: PlanItem
    verification: VerificationPolicy
    transfer: TransferPolicy
    attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 20.0
    maybe_ours: bool = False
    written_digests: Mapping[str, str] = attrs.field(factory=dict)
    written_etag: str | None = None
    written_piece: str | None = None
    written_car_root: str | None = None
    reread_source: bool = False
    created: bool = False
    source_url: str = ""
    destination_url: str = ""
    source_options: tuple[tuple[str, Any], ...] = ()
    destination_options: tuple[tuple[str, Any], ...] = ()


@attrs.frozen(kw_only=True)
class Outcome(ItemOutcome):
    """What a worker found; the coordinator records it. ``state=None``: no change.

    The outcome fields are [ItemOutcome][carmigrate.migrate.ItemOutcome]'s;
    ``attempts`` counts this task's attempts (added to the ledger's).
    """

    seq: int
    mode: Mode
    state: ItemState | None
    attempts: int = 0
    ready: bool = True


class StorePair:
    """The two stores a worker uses (shared objects in the coordinator's process)."""

    __slots__ = ("destination", "source")

    def __init__(self, source: Store, destination: Store) -> None:
        self.source = source
        self.destination = destination


_REMOTE: dict[tuple[str, str], Store] = {}
_REMOTE_LOCK = threading.Lock()


def _remote_store(
    url: str, options: tuple[tuple[str, Any], ...], *, writable: bool = False
) -> Store:
    """A store opened from its URL, cached per worker process.

    A destination (``writable``) that is a local folder is created if missing.
    """
    key = (url, repr(options))
    with _REMOTE_LOCK:
        store = _REMOTE.get(key)
        if store is None:
            opts = dict(options)
            if writable and is_local_url(url):
                opts.setdefault("create", True)
            store = open_store(url, **opts)
            _REMOTE[key] = store
        return store


def remote_stores(task: Task) -> StorePair:
    """The stores of ``task``, opened by URL in this process (cached)."""
    return StorePair(
        _remote_store(task.source_url, task.source_options),
        _remote_store(task.destination_url, task.destination_options, writable=True),
    )


# ----------------------------------------------------------------------
# the single-read checking pipeline


class _Pipe(io.RawIOBase):
    """A bounded, thread-safe byte pipe: one writer thread, one reader thread.

    State: queued chunks (at most ``depth``), the chunk being read, and
    whether either side closed. A writer blocks while the pipe is full; once
    the reader has closed, writes are dropped (``put`` returns ``False``).
    """

    def __init__(self, depth: int = _PIPE_DEPTH) -> None:
        super().__init__()
        self._queue: collections.deque[bytes] = collections.deque()
        self._cv = threading.Condition()
        self._depth = depth
        self._eof = False
        self._reader_gone = False
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def put(self, chunk: bytes) -> bool:
        with self._cv:
            while len(self._queue) >= self._depth and not self._reader_gone:
                self._cv.wait()
            if self._reader_gone:
                return False
            self._queue.append(chunk)
            self._cv.notify_all()
            return True

    def end(self) -> None:
        with self._cv:
            self._eof = True
            self._cv.notify_all()

    def reader_done(self) -> None:
        with self._cv:
            self._reader_gone = True
            self._queue.clear()
            self._cv.notify_all()

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        if not self._current:
            with self._cv:
                while not self._queue and not self._eof:
                    self._cv.wait()
                if not self._queue:
                    return 0
                self._current = memoryview(self._queue.popleft())
                self._cv.notify_all()
        n = min(len(view), len(self._current))
        view[:n] = self._current[:n]
        self._current = self._current[n:]
        return n


class _CarCheck:
    """``verify_car`` over bytes pushed from another thread."""

    def __init__(self) -> None:
        self._pipe = _Pipe()
        self.result: VerifyResult | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name="carmigrate-car-check", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            # this thread is already apart from the reading one: hashing in
            # yet another only adds hand-overs (20 x 100 MiB with commP,
            # paired rounds: 5.96 -> 5.04 s)
            self.result = verify_car(
                self._pipe,  # type: ignore[arg-type]
                check_index=False,
                hash_thread=False,
            )
        except BaseException as e:  # reported to the feeding thread
            self.error = e
        finally:
            self._pipe.reader_done()

    def feed(self, chunk: bytes) -> bool:
        """Push bytes; ``False`` once the verifier has stopped reading."""
        return self._pipe.put(chunk)

    def finish(self) -> VerifyResult:
        self._pipe.end()
        self._thread.join()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def stopped_with_failure(self) -> bool:
        self._thread.join()
        return self.error is not None or (
            self.result is not None and not self.result.ok
        )

    def close(self) -> None:
        self._pipe.end()
        self._thread.join()


@attrs.frozen
class _Facts:
    size: int
    digests: dict[str, str]
    car: VerifyResult | None
    piece_cid: str | None
    piece_cid_v2: str | None

    @property
    def sha256(self) -> str | None:
        return self.digests.get("sha256")


class _Digester:
    """Every digest and check of one pass over an object's bytes."""

    def __init__(
        self,
        *,
        digests: Iterable[str] = (),
        sha256: bool = True,
        commp: bool = False,
        car: bool = False,
        progress: Callable[[int], None] | None = None,
        size: int | None = None,
    ) -> None:
        # SHA-256 has its own path (with a held CAR it is computed alongside
        # the block hashes); every other digest is one more hasher fed each
        # chunk of the one read
        others = [n for n in digests if n != "sha256"]
        self._others = MultiHasher(others) if others else None
        self._sha256 = hashlib.sha256() if sha256 else None
        self._commp = PieceHasher(threads=1) if commp else None
        inline = car and size is not None and size <= _INLINE_CAR
        self._car = _CarCheck() if car and not inline else None
        # inline: the chunks are held and checked in finish(); if more bytes
        # come than the size promised, the check switches to streaming
        self._car_chunks: list[bytes] | None = [] if inline else None
        self.holds = inline
        # commP of a held CAR runs once over the whole object in finish():
        # one call into the core, no staging of partial chunks
        self._commp_later = inline and self._commp is not None
        # and its SHA-256 alongside its block hashes, two streams at a time
        self._sha256_later = inline and self._sha256 is not None
        self._car_held = 0
        self._car_live = car
        self._progress = progress
        self.count = 0
        self.facts: _Facts | None = None

    def update(self, chunk: bytes) -> None:
        if self._others is not None:
            self._others.update(chunk)
        if self._sha256 is not None and not self._sha256_later:
            self._sha256.update(chunk)
        if self._commp is not None and not self._commp_later:
            self._commp.update(chunk)
        if self._car_chunks is not None:
            self._car_chunks.append(chunk)
            self._car_held += len(chunk)
            if self._car_held > _INLINE_CAR:
                held, self._car_chunks = self._car_chunks, None
                self._car = _CarCheck()
                for part in held:
                    if self._sha256_later:
                        assert self._sha256 is not None
                        self._sha256.update(part)
                    if self._commp_later:
                        assert self._commp is not None
                        self._commp.update(part)
                    self._stream_car(part)
                self._commp_later = self._sha256_later = False
        elif self._car is not None:
            self._stream_car(chunk)
        self.count += len(chunk)
        if self._progress is not None:
            self._progress(len(chunk))

    def _stream_car(self, chunk: bytes) -> None:
        assert self._car is not None
        if self._car_live and not self._car.feed(chunk):
            self._car_live = False
            if self._car.stopped_with_failure():
                self.car_failed()

    def car_failed(self) -> None:
        assert self._car is not None
        result = self._car.finish()
        failure = result.first_failure
        assert failure is not None
        raise _Rejected(
            f"CAR check failed: {failure.reason}",
            offset=failure.offset,
        )

    def finish(self) -> _Facts:
        car = None
        sha256 = None
        if self._car is not None:
            car = self._car.finish()
        elif self._car_chunks is not None:
            data, self._car_chunks = b"".join(self._car_chunks), None
            if self._commp_later:
                assert self._commp is not None
                self._commp.update(data)
                self._commp_later = False
            car = verify_car(data, check_index=False, sha256=self._sha256_later)
            sha256 = car.sha256  # None unless computed there
        if sha256 is None and self._sha256 is not None:
            sha256 = self._sha256.hexdigest()
        piece = v2 = None
        if self._commp is not None:
            info = self._commp.piece_info()
            piece = str(info.cid_v1)
            v2 = str(info.cid_v2)
        digests = {} if self._others is None else self._others.hexdigests()
        if sha256 is not None:
            digests["sha256"] = sha256
        return _Facts(
            size=self.count,
            digests=dict(sorted(digests.items())),
            car=car,
            piece_cid=piece,
            piece_cid_v2=v2,
        )

    def close(self) -> None:
        self._car_chunks = None
        if self._car is not None:
            self._car.close()


class _Rejected(VerificationError):
    """A check failed while the bytes streamed; the write is abandoned."""

    transient = False

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


class _Identical(CarmigrateError):
    """The bytes equal what the destination already holds; nothing to write."""

    def __init__(self, facts: _Facts) -> None:
        super().__init__("identical to the destination object")
        self.facts = facts


@attrs.frozen
class _Truth:
    algo: str
    digest: str
    origin: str


class _Judge:
    """Compares facts with truths; collects the checks that passed."""

    def __init__(self, truths: list[_Truth], *, car: bool, size: int | None) -> None:
        self.truths = truths
        self.car = car
        self.size = size

    def judge(
        self, facts: _Facts
    ) -> tuple[list[str], str | None, int | None, str | None]:
        """Returns (checks passed, problem, offset, car_check)."""
        checks: list[str] = []
        if self.size is not None and facts.size != self.size:
            return checks, f"{facts.size} bytes, {self.size} expected", None, None
        for t in self.truths:
            got = facts.digests.get(t.algo)
            if got is None:
                continue
            if got != t.digest:
                return (
                    checks,
                    f"{t.algo} {got} does not match the {t.origin}'s {t.digest}",
                    None,
                    None,
                )
            checks.append(f"{t.algo}:{t.origin}")
        car_check = None
        if self.car and facts.car is not None:
            result = facts.car
            failure = result.first_failure
            if failure is not None:
                return (
                    checks,
                    f"CAR check failed: {failure.reason}",
                    failure.offset,
                    "failed",
                )
            if result.unverifiable:
                car_check = "partial"
            else:
                car_check = "verified"
                checks.append("car")
        return sorted(set(checks)), None, None, car_check


def _tee(
    stream: BinaryIO,
    digester: _Digester,
    judge: _Judge,
    identical_to: str | None,
    read_size: int = CHUNK,
) -> Iterator[bytes]:
    """Yield the stream's chunks through the digester; judge at the end."""
    read = stream.read
    while True:
        data: Any = read(read_size)
        if not data:
            break
        chunk = data if type(data) is bytes else bytes(data)
        digester.update(chunk)
        yield chunk
    facts = digester.finish()
    _, problem, offset, _ = judge.judge(facts)
    if problem is not None:
        raise _Rejected(problem, offset=offset)
    if identical_to is not None and facts.sha256 == identical_to:
        raise _Identical(facts)
    digester.facts = facts


def key_sha256(key: str) -> str | None:
    """The SHA-256 a content-addressed key names, if it names one.

    The last segment, up to its first dot, must be a CIDv1 with codec
    ``raw`` or ``car`` and a 32-byte sha2-256 multihash: those hash the
    whole object's bytes (a DAG root CID does not).
    """
    name = key.rsplit("/", 1)[-1].split(".", 1)[0]
    if len(name) < 40 or not name.startswith("b"):
        return None
    try:
        cid = CID.decode(name)
    except (ValueError, CarmigrateError):
        return None
    if cid.version != 1 or cid.codec not in (_RAW, _CAR) or cid.hash_code != _SHA256:
        return None
    if len(cid.digest) != 32:
        return None
    return cid.digest.hex()


# ----------------------------------------------------------------------
# the work


class _Failed(Exception):
    """Internal: end the task with a FAILED outcome (not retried)."""

    def __init__(
        self, reason: str, offset: int | None = None, *, transient: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset
        self.transient = transient


class _Worker:
    """State of one task's execution."""

    def __init__(
        self, task: Task, stores: StorePair, progress: Progress | None
    ) -> None:
        self.task = task
        self.src = stores.source
        self.dst = stores.destination
        self.item = task.item
        self.policy = task.verification
        self.transfer = task.transfer
        self.is_car = task.item.source_key is not None and self.policy.is_car(
            task.item.source_key
        )
        self.progress = progress
        self.attempts = 0
        self.bytes_moved = 0
        self.wrote_maybe = task.maybe_ours
        # what every read computes (truths() adds what can be compared)
        always = set(self.policy.record) | set(task.written_digests)
        if self.is_car:
            # a CAR gets every digest the policy names (deal manifests list
            # a CAR's MD5)
            always |= set(self.policy.digests)
        self.always_digests = frozenset(always)
        self.digest_names: frozenset[str] = self.always_digests

    # -- helpers --------------------------------------------------------

    def _on_bytes(self) -> Callable[[int], None] | None:
        progress = self.progress
        if progress is None:
            return None
        seq = self.task.seq

        def report(n: int) -> None:
            progress(seq, n)

        return report

    def digester(self, *, full: bool, progress: bool = True) -> _Digester:
        wants = self.policy.wants
        return _Digester(
            digests=self.digest_names,
            sha256=True,
            commp=full and self.is_car and wants(Check.COMMP),
            car=full and self.is_car and wants(Check.CAR),
            progress=self._on_bytes() if progress else None,
            size=self.item.size,
        )

    def read_facts(self, store: Store, key: str, *, full: bool) -> _Facts:
        dig = self.digester(full=full, progress=False)
        try:
            with store.open_read(key) as stream:
                while data := stream.read(CHUNK):
                    raw: Any = data
                    dig.update(raw if type(raw) is bytes else bytes(raw))
            return dig.finish()
        finally:
            dig.close()

    def truths(self, info: Any) -> list[_Truth]:
        """What the source vouches for, checked against the plan."""
        item = self.item
        wants = self.policy.wants
        out: list[_Truth] = []
        if info is not None:
            if info.size != item.size:
                raise _Failed(
                    f"the source changed since the plan: {info.size} bytes, "
                    f"{item.size} planned (make a new plan)"
                )
            if (
                item.etag is not None
                and info.etag is not None
                and info.etag != item.etag
            ):
                raise _Failed(
                    f"the source changed since the plan: ETag {info.etag}, "
                    f"{item.etag} planned (make a new plan)"
                )
        planned = item.digests
        now = (
            clean_digests(info.checksums) if info is not None and info.checksums else {}
        )
        for algo in sorted(set(planned) | set(now)):
            p, n = planned.get(algo), now.get(algo)
            if p is not None and n is not None and p != n:
                raise _Failed(
                    f"the source changed since the plan: {algo} {n}, {p} "
                    "planned (make a new plan)"
                )
            digest = p or n
            if digest is not None and wants(algo):
                out.append(_Truth(algo, digest, "source"))
        if self.policy.key_cids and item.source_key is not None:
            digest = key_sha256(item.source_key)
            if digest is not None:
                out.append(_Truth("sha256", digest, "key"))
        # a digest is computed when something uses it: a truth to compare,
        # one recorded earlier to check against, or the policy's record
        self.digest_names = self.always_digests | {t.algo for t in out}
        return out

    def metadata(
        self, info: Any
    ) -> tuple[Mapping[str, str] | None, list[str], list[str]]:
        carried: list[str] = []
        lost: list[str] = []
        meta: Mapping[str, str] | None = None
        if info.metadata:
            names = [f"metadata:{k}" for k in sorted(info.metadata)]
            if self.transfer.metadata and self.dst.capabilities.user_metadata:
                meta = dict(info.metadata)
                carried += names
            else:
                lost += names
        if info.mtime is not None:
            lost.append("mtime")
        if info.storage_class not in (None, "STANDARD"):
            lost.append("storage_class")
        return meta, carried, lost

    def retry(self, fn: Callable[[], Outcome]) -> Outcome:
        task = self.task
        while True:
            self.attempts += 1
            try:
                return fn()
            except _Failed as e:
                return self.failed(e.reason, e.offset, transient=e.transient)
            except _Rejected as e:
                return self.failed(str(e), e.offset, transient=False)
            except CarmigrateError as e:
                error = f"{type(e).__name__}: {e}"
                if not e.transient or self.attempts >= task.attempts:
                    return self.failed(
                        str(e) or type(e).__name__,
                        getattr(e, "offset", None),
                        transient=e.transient,
                    )
            except Exception as e:  # recorded, the run goes on
                return self.failed(
                    f"unexpected {type(e).__name__}: {e}", None, transient=False
                )
            _log.debug(
                "%s: attempt %d failed (%s), retrying",
                self.item.key,
                self.attempts,
                error,
            )
            bound = min(task.max_delay, task.base_delay * (2 ** (self.attempts - 1)))
            # the module's generator: shared (seeding one per task costs more
            # than a small copy) and seeded afresh in forked workers
            time.sleep(random.uniform(0, bound))  # noqa: S311 - jitter, not crypto

    def failed(self, reason: str, offset: int | None, *, transient: bool) -> Outcome:
        return Outcome(
            seq=self.task.seq,
            mode=self.task.mode,
            state=ItemState.FAILED,
            attempts=self.attempts,
            reason=reason,
            offset=offset,
            transient=transient,
            bytes_moved=self.bytes_moved,
        )

    def outcome(self, state: ItemState | None, **fields: Any) -> Outcome:
        return Outcome(
            seq=self.task.seq,
            mode=self.task.mode,
            state=state,
            attempts=self.attempts,
            bytes_moved=self.bytes_moved,
            **fields,
        )

    def finished(
        self,
        facts: _Facts,
        checks: list[str],
        car_check: str | None,
        **fields: Any,
    ) -> Outcome:
        car = facts.car
        return self.outcome(
            ItemState.VERIFIED if checks else ItemState.UNVERIFIABLE,
            digests=facts.digests,
            car_root=str(car.roots[0]) if car is not None and car.roots else None,
            car_blocks=None if car is None else car.blocks,
            car_check=car_check,
            piece_cid=facts.piece_cid,
            piece_cid_v2=facts.piece_cid_v2,
            checks=tuple(checks),
            **fields,
        )

    # -- modes ----------------------------------------------------------

    def run(self) -> Outcome:
        mode = self.task.mode
        if mode is Mode.RESTORE:
            return self.retry(self.restore)
        if mode is Mode.CHECK:
            return self.retry(self.check_written)
        if mode is Mode.VERIFY:
            return self.retry(self.verify)
        if mode is Mode.DELETE:
            return self.retry(self.delete)
        return self.retry(self.copy)

    def stat_source(self) -> Any:
        key = self.item.source_key
        assert key is not None
        try:
            return self.src.stat(key)
        except ObjectNotFound:
            raise _Failed(
                "the source object is gone (deleted since the plan)"
            ) from None

    def copy(self) -> Outcome:
        item = self.item
        info = self.stat_source()
        if info.cold:
            return self.outcome(
                ItemState.WARMING,
                ready=False,
                reason=f"in storage class {info.storage_class}",
            )
        truths = self.truths(info)
        meta, carried, lost = self.metadata(info)
        fidelity = {"carried": tuple(carried), "lost": tuple(lost)}
        mode = self.task.mode
        dkey = item.destination_key
        identical_to: str | None = None
        replacing = False
        if mode in (Mode.COMPARE, Mode.REPLACE):
            try:
                dinfo = self.dst.stat(dkey)
            except ObjectNotFound:
                dinfo = None
            if dinfo is not None:
                overwrite = self.transfer.overwrite is Overwrite.IF_DIFFERENT
                if mode is Mode.COMPARE and not overwrite:
                    return self.compare(info, truths, fidelity)
                replacing = True
                if dinfo.size == info.size:
                    identical_to = self.read_facts(self.dst, dkey, full=False).sha256
        conditional = self.dst.capabilities.conditional_write
        if not replacing and not conditional:
            try:
                self.dst.stat(dkey)
            except ObjectNotFound:
                pass
            else:
                return self.compare(info, truths, fidelity)
        if (
            self.transfer.server_side_copy
            and not replacing
            and isinstance(self.dst, SupportsServerSideCopy)
            and self.dst.can_copy_from(self.src)
        ):
            return self.server_side(info, truths, meta, fidelity, conditional)
        judge = _Judge(
            truths, car=self.is_car and self.policy.wants(Check.CAR), size=item.size
        )
        dig = self.digester(full=True)
        assert item.source_key is not None
        try:
            with self.src.open_read(item.source_key) as stream:
                try:
                    out = self.dst.write(
                        dkey,
                        _tee(
                            stream,
                            dig,
                            judge,
                            identical_to,
                            # a CAR that is held anyway is read in one piece
                            # (one more byte shows one that grew): 1,000 x
                            # 1 MiB with commP, 3.53 -> 3.15 s
                            info.size + 1
                            if dig.holds and info.size <= _INLINE_CAR
                            else CHUNK,
                        ),
                        size=info.size if self.policy.wants(Check.SIZE) else None,
                        if_absent=not replacing and conditional,
                        metadata=meta,
                    )
                except ObjectExists:
                    return self.compare(info, truths, fidelity)
                except _Identical as same:
                    checks, _, _, car_check = judge.judge(same.facts)
                    return self.finished(
                        same.facts, [*checks, "compare"], car_check, **fidelity
                    )
                except CarmigrateError as e:
                    if e.transient and dig.facts is not None:
                        # every byte went to the writer, so the answer may
                        # have been lost after the write completed
                        self.wrote_maybe = True
                    if isinstance(e, StorageError) and not isinstance(e, _Rejected):
                        e.offset = dig.count  # type: ignore[attr-defined]
                    raise
        finally:
            dig.close()
        facts = dig.facts
        assert facts is not None
        self.bytes_moved += facts.size
        checks, _, _, car_check = judge.judge(facts)
        return self.finished(
            facts,
            checks,
            car_check,
            created=not replacing,
            replaced=replacing,
            written_etag=out.etag,
            **fidelity,
        )

    def compare(
        self, info: Any, truths: list[_Truth], fidelity: dict[str, Any]
    ) -> Outcome:
        """The destination holds an object: is it the source's bytes?"""
        item = self.item
        assert item.source_key is not None
        try:
            dinfo = self.dst.stat(item.destination_key)
        except ObjectNotFound:
            raise StorageError(
                f"{item.destination_key!r} appeared and vanished at the destination",
                transient=True,
            ) from None
        if dinfo.size != info.size:
            return self.outcome(
                ItemState.CONFLICT,
                reason=f"the destination holds {dinfo.size} bytes, the source {info.size}",
            )
        dfacts = self.read_facts(self.dst, item.destination_key, full=True)
        sfacts = self.read_facts(self.src, item.source_key, full=False)
        if dfacts.sha256 != sfacts.sha256:
            return self.outcome(
                ItemState.CONFLICT,
                reason=f"the destination holds different content (sha256 {dfacts.sha256}, "
                f"the source's is {sfacts.sha256})",
                digests=dfacts.digests,
            )
        judge = _Judge(
            truths, car=self.is_car and self.policy.wants(Check.CAR), size=item.size
        )
        checks, problem, offset, car_check = judge.judge(dfacts)
        if problem is not None:
            raise _Failed(
                f"the source and the destination agree, but {problem}", offset
            )
        return self.finished(
            dfacts,
            [*checks, "compare"],
            car_check,
            created=self.wrote_maybe and item.action is Action.COPY,
            **fidelity,
        )

    def server_side(
        self,
        info: Any,
        truths: list[_Truth],
        meta: Mapping[str, str] | None,
        fidelity: dict[str, Any],
        conditional: bool,
    ) -> Outcome:
        item = self.item
        assert item.source_key is not None
        assert isinstance(self.dst, SupportsServerSideCopy)
        try:
            out = self.dst.copy_from(
                self.src,
                item.source_key,
                item.destination_key,
                if_absent=conditional,
                metadata=meta,
            )
        except ObjectExists:
            return self.compare(info, truths, fidelity)
        self.wrote_maybe = True
        return self.check_written(
            created=True, written_etag=out.etag, server=True, **fidelity
        )

    def check_written(
        self,
        *,
        created: bool | None = None,
        written_etag: str | None = None,
        server: bool = True,
        **fidelity: Any,
    ) -> Outcome:
        """Read back an object this plan wrote (server-side copy) and check it."""
        item = self.item
        if created is None:
            created = self.task.created
        info = self.stat_source()
        truths = self.truths(info)
        judge = _Judge(
            truths, car=self.is_car and self.policy.wants(Check.CAR), size=item.size
        )
        facts = self.read_facts(self.dst, item.destination_key, full=True)
        checks, problem, offset, car_check = judge.judge(facts)
        if problem is not None:
            if created:
                self.dst.delete(item.destination_key)
            raise _Failed(
                f"after a server-side copy: {problem}"
                + ("; the object was deleted again" if created else ""),
                offset,
            )
        return self.finished(
            facts,
            checks,
            car_check,
            created=created,
            written_etag=written_etag or self.task.written_etag,
            server_side=server,
            **fidelity,
        )

    def restore(self) -> Outcome:
        info = self.stat_source()
        if not info.cold:
            return self.outcome(None, ready=True)
        if not (info.restore is not None and info.restore.in_progress):
            if not isinstance(self.src, SupportsRestore):
                raise _Failed(
                    f"the source object is in storage class {info.storage_class} and "
                    f"{self.src.url} cannot restore objects"
                )
            key = self.item.source_key
            assert key is not None
            self.src.request_restore(
                key, days=self.transfer.restore_days, tier=self.transfer.restore_tier
            )
        return self.outcome(None, ready=False)

    def verify(self) -> Outcome:
        """Read the destination back and check it against the ledger and the source."""
        task = self.task
        item = self.item
        try:
            self.dst.stat(item.destination_key)
        except ObjectNotFound:
            raise _Failed("verify: the destination object is missing") from None
        info = None
        if item.source_key is not None:
            try:
                info = self.src.stat(item.source_key)
            except ObjectNotFound:
                info = None
        note = None
        try:
            truths = self.truths(info)
        except _Failed as e:
            # the source moved on since the plan: hold the destination to what
            # was planned, and do not compare it with the new source bytes
            note = f"verify: {e.reason}; checked against the planned digests"
            truths = self.truths(None)
            info = None
        facts = self.read_facts(self.dst, item.destination_key, full=True)
        root = (
            str(facts.car.roots[0])
            if facts.car is not None and facts.car.roots
            else None
        )
        for name, recorded, got in (
            *(
                (algo, value, facts.digests.get(algo))
                for algo, value in sorted(task.written_digests.items())
            ),
            ("PieceCID", task.written_piece, facts.piece_cid),
            ("CAR root", task.written_car_root, root),
        ):
            if recorded is not None and got is not None and recorded != got:
                raise _Failed(
                    f"verify: the destination's {name} {got} differs from the {recorded} "
                    "recorded when it was written"
                )
        judge = _Judge(
            truths, car=self.is_car and self.policy.wants(Check.CAR), size=item.size
        )
        checks, problem, offset, car_check = judge.judge(facts)
        if problem is not None:
            raise _Failed(f"verify: {problem}", offset)
        if task.reread_source and info is not None and item.source_key is not None:
            if info.cold:
                raise _Failed(
                    "verify: the source is in a cold tier; restore it to re-read",
                    transient=True,
                )
            sfacts = self.read_facts(self.src, item.source_key, full=False)
            if sfacts.sha256 != facts.sha256:
                raise _Failed(
                    f"verify: the destination's sha256 {facts.sha256} differs from the "
                    f"source's {sfacts.sha256} (read again)"
                )
            checks.append("reread")
        return self.finished(facts, sorted(set(checks)), car_check, reason=note)

    def delete(self) -> Outcome:
        """Rollback: delete the object if it still holds what this plan wrote."""
        task = self.task
        key = self.item.destination_key
        try:
            info = self.dst.stat(key)
        except ObjectNotFound:
            return self.outcome(
                ItemState.ROLLED_BACK, reason="already gone at the destination"
            )
        same: bool | None = None
        if task.written_etag is not None and info.etag is not None:
            same = info.etag == task.written_etag
        written_sha256 = task.written_digests.get("sha256")
        if same is None and info.checksums.get("sha256") and written_sha256:
            same = info.checksums["sha256"].lower() == written_sha256
        if same is None and info.size != self.item.size:
            same = False
        if same is None:
            same = self.read_facts(self.dst, key, full=False).sha256 == written_sha256
        if not same:
            return self.outcome(
                None,
                reason="kept: the destination object changed since this plan wrote it",
            )
        self.dst.delete(key)
        return self.outcome(ItemState.ROLLED_BACK, reason="deleted")


def run_task(
    task: Task, stores: StorePair | None = None, progress: Progress | None = None
) -> Outcome:
    """Carry out ``task`` and return what happened (never raises for item failures).

    With ``stores=None`` the stores are opened from the task's URLs in this
    process (remote workers). Transient errors are retried with backoff and
    full jitter up to ``task.attempts`` attempts; anything else ends the
    item as ``FAILED`` with the reason and, where known, the byte offset.
    ``BaseException`` (interrupts) propagates.
    """
    pair = stores if stores is not None else remote_stores(task)
    return _Worker(task, pair, progress).run()


def run_tasks(
    tasks: Sequence[Task],
    stores: StorePair | None = None,
    progress: Progress | None = None,
) -> list[Outcome | Exception]:
    """Carry out ``tasks`` one after another (a group of small objects).

    One unit of work for the executor instead of one per object: the
    per-task costs of submitting, waiting and recording are paid once. An
    ``Exception`` from one task (a bug, a store that cannot be opened) is
    that task's result; the others keep theirs.
    """
    out: list[Outcome | Exception] = []
    for task in tasks:
        try:
            out.append(run_task(task, stores, progress))
        except Exception as e:  # recorded by the coordinator as that item's failure
            out.append(e)
    return out
