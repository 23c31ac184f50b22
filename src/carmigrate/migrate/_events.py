"""Events of a run and the reporters that show them (progress bar, JSON lines)."""

from __future__ import annotations

import enum
import os
import sys
import threading
from typing import IO, TYPE_CHECKING, Any, Protocol, final, runtime_checkable

import attrs

from carmigrate.migrate import serde
from carmigrate.migrate._model import ItemState

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["Event", "EventKind", "JsonLinesReporter", "Reporter", "TqdmReporter"]


class EventKind(enum.Enum):
    """What an [Event][carmigrate.migrate.Event] reports.

    Attributes:
        RUN_STARTED: A run began; ``items`` and ``bytes`` give the work
            selected (an upper bound: limits may stop it earlier).
        QUEUED: An item was taken from the ledger for this run.
        STARTED: An item was handed to a worker.
        BYTES: ``bytes`` more bytes of an item went through (thread workers
            only; remote workers report at the end).
        WARMING: An item waits for a restore from a cold tier.
        DONE: An item reached a final state (``state``) other than failed.
        FAILED: An item failed (``reason``, ``offset``).
        RUN_FINISHED: The run ended (``reason`` says why).
    """

    RUN_STARTED = "run_started"
    QUEUED = "queued"
    STARTED = "started"
    BYTES = "bytes"
    WARMING = "warming"
    DONE = "done"
    FAILED = "failed"
    RUN_FINISHED = "run_finished"


@attrs.frozen(kw_only=True)
class Event:
    """One thing that happened during a run.

    Attributes:
        kind: What happened.
        time: When (Unix time).
        run: The ledger's run number.
        seq: The item, for item events.
        key: The item's key (source key; destination key for extras).
        size: The item's size.
        bytes: Bytes reported (``BYTES``: the increment; ``DONE``: bytes
            sent; run events: the selected or sent total).
        items: Items (run events only).
        state: The item's new state (``DONE``, ``FAILED``).
        reason: Failure reason, or why a run stopped.
        offset: Byte offset of a failure, if known.
    """

    kind: EventKind
    time: float
    run: int | None = None
    seq: int | None = None
    key: str | None = None
    size: int | None = None
    bytes: int = 0
    items: int = 0
    state: ItemState | None = None
    reason: str | None = None
    offset: int | None = None


@runtime_checkable
class Reporter(Protocol):
    """Anything that takes events: a callable ``reporter(event)``.

    Reporters run in the coordinator's thread, in event order, and should be
    quick. An exception from a reporter is turned into a warning and the
    reporter gets no more events; the run goes on.
    """

    def __call__(self, event: Event) -> None:
        """Handle one event."""
        ...


@final
class JsonLinesReporter:
    """Write every event as one line of canonical JSON.

    Lines are flushed as they are written, so ``tail -f`` follows a run.
    ``BYTES`` events are left out unless ``bytes_events``.

    State: the open stream (closed by [close][carmigrate.migrate.JsonLinesReporter.close]
    only if this reporter opened it).

    Args:
        target: A path (appended to) or an open text stream.
        bytes_events: Also write ``BYTES`` events.
    """

    def __init__(
        self, target: str | os.PathLike[str] | IO[str], *, bytes_events: bool = False
    ) -> None:
        if isinstance(target, (str, os.PathLike)):
            self._stream: IO[str] = open(target, "a", encoding="ascii")  # noqa: SIM115
            self._owned = True
        else:
            self._stream = target
            self._owned = False
        self._bytes = bytes_events
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        """Write ``event`` as a line."""
        if event.kind is EventKind.BYTES and not self._bytes:
            return
        data = {k: v for k, v in serde.unstructure(event).items() if v is not None}
        line = serde.canonical_json(data) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()

    def close(self) -> None:
        """Close the stream if this reporter opened it."""
        if self._owned:
            self._stream.close()

    def __enter__(self) -> JsonLinesReporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@final
class TqdmReporter:
    """A progress bar in bytes (``tqdm.auto``: a widget in Jupyter, text elsewhere).

    The bar opens at ``RUN_STARTED`` with the selected bytes as its total,
    advances on ``BYTES`` and ``DONE`` events, shows counts of verified,
    unverifiable, conflicting and failed items, and closes at
    ``RUN_FINISHED``. tqdm is imported only then (``carmigrate[progress]``).

    State: the open bar and the counters of the current run.

    Args:
        file: Where the text bar goes (default ``sys.stderr``).
        **options: Passed on to ``tqdm`` (``mininterval``, ``disable``, ...).
    """

    def __init__(self, *, file: IO[str] | None = None, **options: Any) -> None:
        self._file = file
        self._options = options
        self._bar: Any = None
        self._counted: dict[int, int] = {}
        self._states: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        """Advance the bar."""
        kind = event.kind
        if kind is EventKind.RUN_STARTED:
            from tqdm.auto import tqdm

            self.close()
            self._counted.clear()
            self._states.clear()
            self._bar = tqdm(
                total=event.bytes,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"run {event.run}",
                file=self._file if self._file is not None else sys.stderr,
                **self._options,
            )
            return
        bar = self._bar
        if bar is None:
            return
        if kind is EventKind.BYTES and event.seq is not None:
            self._counted[event.seq] = self._counted.get(event.seq, 0) + event.bytes
            bar.update(event.bytes)
        elif kind in (EventKind.DONE, EventKind.FAILED) and event.seq is not None:
            seen = self._counted.pop(event.seq, 0)
            total = event.size or 0
            if total > seen:
                bar.update(total - seen)
            name = event.state.value if event.state is not None else kind.value
            self._states[name] = self._states.get(name, 0) + 1
            bar.set_postfix(self._states, refresh=False)
        elif kind is EventKind.RUN_FINISHED:
            bar.set_postfix({**self._states, "stop": event.reason}, refresh=True)
            self.close()

    def close(self) -> None:
        """Close the bar if one is open."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
