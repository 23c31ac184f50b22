"""Executing record plans: one destination transaction per stage, checkpoints, rollback.

The commit protocol (see the explanation page "Records"):

1. A stage runs in one transaction at the destination, each batch of rows
   in a savepoint.
2. Before it commits, the integrity checks run in the same transaction, and
   the stage's *checkpoint* (what it inserted, what triggers created, the
   before-images of rows it changed, its part of the ID map) is written as
   one row of the marker table ``carmigrate_record_stages`` at the
   destination, in the same transaction.
3. After the destination commits, the checkpoint is copied into the ledger
   (a unit of kind ``record-stage``).

So the destination's marker table is the truth and the ledger its mirror:
a kill before step 3 leaves a committed stage whose checkpoint is at the
destination only, and the next call copies it into the ledger (the stage
is *repaired*, not run again); a kill before the commit leaves nothing of
the stage anywhere. Every call starts by bringing the ledger in line with
the marker table.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.errors import (
    PlanError,
    RecordsError,
    RecordsIntegrityError,
    RollbackRefused,
)
from carmigrate.migrate._units import Unit, Verdict

if TYPE_CHECKING:
    import sqlalchemy as sa

    from carmigrate.migrate._ledger import Ledger
    from carmigrate.records import RecordPlan, RecordStage, TableInfo

__all__ = [
    "MARKER_TABLE",
    "STAGE_UNIT_KIND",
    "RecordRollbackResult",
    "RecordRunResult",
    "StageCheckpoint",
    "execute_records",
    "record_checkpoints",
    "rollback_records",
]

MARKER_TABLE: Final = "carmigrate_record_stages"
"""The table at the destination holding one checkpoint row per committed stage."""

STAGE_UNIT_KIND: Final = "record-stage"
"""The ledger unit kind of a record stage's checkpoint."""

_PLAN_META: Final = "record_plan_id"
_BATCH: Final = 1000
# keys per ``= ANY(array)`` lookup on PostgreSQL (one parameter, not one each)
_ANY_BATCH: Final = 50_000
# rows a stage inserts into a PostgreSQL table before its statistics are refreshed
_ANALYZE_AFTER: Final = 5_000


def _text_digest(line: bytes) -> bytes:
    """The checkpoint digest of a row loaded as COPY text: BLAKE2b-128 of its line."""
    return hashlib.blake2b(line, digest_size=16).digest()


Hook = Callable[[str, str, int], None]
Key = tuple[Any, ...]


@attrs.define
class _TablePlan:
    """One table's part of the plan, indexed once per run."""

    inserts: list[Any] = attrs.Factory(list)
    merges: list[Any] = attrs.Factory(list)
    keys: list[Any] = attrs.Factory(list)
    id_map: list[list[Any]] = attrs.Factory(list)


def _index(plan: RecordPlan) -> dict[str, _TablePlan]:
    """Each table's inserts, merges, source keys and ID map entries, in one pass over the plan."""
    from carmigrate.records import RowAction

    out: dict[str, _TablePlan] = defaultdict(_TablePlan)
    for r in plan.rows:
        part = out[r.table]
        if r.action is RowAction.INSERT:
            part.inserts.append(r)
        elif r.action is RowAction.MERGE:
            part.merges.append(r)
        part.keys.append(r.key[0] if len(r.key) == 1 else r.key)
    for e in plan.id_map:
        out[e.table].id_map.append(
            [e.table, e.column, *_enc_key([e.old, e.new]), e.action.value]
        )
    return out


class _NotFast(Exception):
    """A table cannot be loaded as COPY text after all (the source changed, or a value)."""


@attrs.frozen
class _Sent:
    """What ``_copy_fast`` sent for one table: the digest of each row's line, by key."""

    codec: Any
    columns: tuple[str, ...]
    expected: dict[Any, bytes]


def _is_psycopg(engine: sa.Engine) -> bool:
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@attrs.frozen(kw_only=True)
class StageCheckpoint:
    """A record stage's checkpoint as the ledger holds it.

    Attributes:
        stage: The stage's name.
        position: Its position in the plan's stages (0-based).
        state: ``"committed"``, ``"rolled-back"`` or ``"failed"``.
        inserted: Rows the plan inserted.
        merged: Rows mapped to existing destination rows (nothing inserted).
        trigger_rows: Rows destination triggers created that match no
            planned row; they are kept, and a rollback deletes them.
        adopted: Rows destination triggers created that duplicate a
            planned row (same unique key); they were replaced by the
            planned row.
        updated: Rows that existed before the stage and that it (through
            a trigger) changed; their before-images are kept for rollback.
        repaired: The destination had committed the stage, but the ledger
            had no checkpoint yet (the run was killed in between); the
            checkpoint was copied from the destination.
        problems: Why the stage failed (integrity check findings).
        finished: When the state was recorded (Unix time).
    """

    stage: str
    position: int
    state: str
    inserted: int = 0
    merged: int = 0
    trigger_rows: int = 0
    adopted: int = 0
    updated: int = 0
    repaired: bool = False
    problems: tuple[str, ...] = ()
    finished: float | None = None


@attrs.frozen(kw_only=True)
class RecordRunResult:
    """What [execute_records][carmigrate.migrate.execute_records] did.

    Attributes:
        plan_id: The record plan's id.
        executed: Checkpoints of the stages this call ran, in order.
        already: Names of the stages committed before this call (skipped).
        repaired: Names of the stages found committed at the destination
            without a ledger checkpoint, whose checkpoint was copied.
    """

    plan_id: str
    executed: tuple[StageCheckpoint, ...] = ()
    already: tuple[str, ...] = ()
    repaired: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class RecordRollbackResult:
    """What [rollback_records][carmigrate.migrate.rollback_records] did.

    Attributes:
        stage: The stage rolled back.
        deleted: Rows deleted (the stage's inserts and its trigger rows).
        restored: Rows restored to their before-images.
        changed: Rows that had changed since the stage (only with
            ``force=True``; otherwise the call refused).
    """

    stage: str
    deleted: int
    restored: int
    changed: tuple[str, ...] = ()


# -- values ---------------------------------------------------------------------


_PLAIN: Final = frozenset({int, str, bool, type(None)})


def _enc_key(key: Sequence[Any]) -> list[Any]:
    # JSON scalars are their own encoding: skip the call for the common keys
    for v in key:
        if type(v) not in _PLAIN:
            from carmigrate.records import encode_value

            return [encode_value(v) for v in key]
    return list(key)


def _dec_key(data: Sequence[Any]) -> Key:
    from carmigrate.records import decode_value

    return tuple(decode_value(v) for v in data)


def _enc_row(row: Mapping[str, Any]) -> dict[str, Any]:
    from carmigrate.records import encode_value

    return {k: encode_value(v) for k, v in row.items()}


def _dec_row(data: Mapping[str, Any]) -> dict[str, Any]:
    from carmigrate.records import decode_value

    return {k: decode_value(v) for k, v in data.items()}


def _digest(row: Mapping[str, Any], columns: Iterable[str] | None = None) -> str:
    from carmigrate.records import row_digest

    if columns is None:
        return row_digest(row)
    return row_digest({c: row[c] for c in columns})


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _unit_name(stage: str) -> str:
    return f"{STAGE_UNIT_KIND}:{stage}"


def _checkpoint(payload: Mapping[str, Any]) -> StageCheckpoint:
    counts = payload.get("counts", {})
    return StageCheckpoint(
        stage=payload["stage"],
        position=int(payload["position"]),
        state=payload["state"],
        inserted=int(counts.get("inserted", 0)),
        merged=int(counts.get("merged", 0)),
        trigger_rows=int(counts.get("trigger_rows", 0)),
        adopted=int(counts.get("adopted", 0)),
        updated=int(counts.get("updated", 0)),
        repaired=bool(payload.get("repaired", False)),
        problems=tuple(payload.get("problems", ())),
        finished=payload.get("finished"),
    )


# -- the ledger side ------------------------------------------------------------------


def _payloads(ledger: Ledger) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for rec in ledger.units(kind=STAGE_UNIT_KIND):
        out[rec.unit.data["stage"]] = dict(rec.unit.data)
    return out


def _record(
    ledger: Ledger, payload: Mapping[str, Any], text: str | None = None
) -> None:
    state = payload["state"]
    verdict = (
        Verdict.COMPLETE
        if state == "committed"
        else Verdict.FAILED
        if state == "failed"
        else Verdict.INCOMPLETE
    )
    # one write of the (possibly large) checkpoint, with its verdict
    ledger._put_unit(
        Unit(
            name=_unit_name(payload["stage"]),
            kind=STAGE_UNIT_KIND,
            data=dict(payload),
        ),
        verdict,
        tuple(payload.get("problems", ())),
        text,
    )


def _bind(ledger: Ledger, plan_id: str) -> None:
    known = ledger._meta(_PLAN_META)
    if known is not None and known != plan_id:
        msg = (
            f"ledger {ledger.path!r} records the record plan {known}, "
            f"not {plan_id}; use a new ledger for a new plan"
        )
        raise PlanError(msg)
    if known is None:
        with ledger._tx():
            ledger._set_meta({_PLAN_META: plan_id})


def record_checkpoints(ledger: Ledger) -> tuple[StageCheckpoint, ...]:
    """The record stages' checkpoints a ledger holds, in plan order.

    Reads the ledger only (the destination's marker table, which wins when
    they disagree, is consulted by
    [execute_records][carmigrate.migrate.execute_records] and
    [rollback_records][carmigrate.migrate.rollback_records]).
    """
    return tuple(
        sorted(
            (_checkpoint(p) for p in _payloads(ledger).values()),
            key=lambda c: c.position,
        )
    )


# -- the destination side ----------------------------------------------------------


class _Destination:
    """The destination: its reflected tables, an engine and the marker table."""

    def __init__(self, url: str | sa.URL) -> None:
        import sqlalchemy as sa

        from carmigrate.records import open_database

        db = open_database(url, read_only=False)
        try:
            self.schema = db.reflect()
            self.tables = {
                t.name: db.table(t.name) for t in self.schema if t.name != MARKER_TABLE
            }
        finally:
            db.close()
        self.url = db.url
        self.dialect = db.dialect
        self.engine = sa.create_engine(url)
        if self.dialect == "sqlite":
            _sqlite_transactions(self.engine)
        self.marker = sa.Table(
            MARKER_TABLE,
            sa.MetaData(),
            sa.Column("plan_id", sa.String(80), primary_key=True),
            sa.Column("stage", sa.String(200), primary_key=True),
            sa.Column("payload", sa.Text, nullable=False),
        )

    def close(self) -> None:
        self.engine.dispose()

    def info(self, table: str) -> TableInfo:
        return self.schema.table(table)

    def markers(self, plan_id: str) -> dict[str, dict[str, Any]]:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(MARKER_TABLE):
                return {}
            rows = conn.execute(
                sa.select(self.marker.c.stage, self.marker.c.payload).where(
                    self.marker.c.plan_id == plan_id
                )
            ).all()
        return {str(s): json.loads(p) for s, p in rows}

    def has_key(self, table: str, keys: Sequence[Key]) -> Any:
        """A condition: the row's primary key is one of ``keys``."""
        return self.matches(table, self.info(table).primary_key, keys)

    def matches(self, table: str, columns: Sequence[str], keys: Sequence[Key]) -> Any:
        """A condition: the row's ``columns`` equal one of the ``keys`` tuples.

        On PostgreSQL one column is compared with ``= ANY`` of one array
        parameter (an ``IN`` list costs a parameter per key to send, parse
        and plan).
        """
        import sqlalchemy as sa

        t = self.tables[table]
        cols = [t.c[c] for c in columns]
        if len(cols) == 1:
            if self.dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import ARRAY

                from carmigrate.records.lowlevel import array_text

                # one text parameter cast to the column's array type (psycopg
                # would adapt a list element by element in Python)
                values = sa.cast(
                    sa.literal(array_text([k[0] for k in keys]), sa.Text),
                    ARRAY(cols[0].type),
                )
                return cols[0] == sa.any_(values)
            return cols[0].in_([k[0] for k in keys])
        return sa.tuple_(*cols).in_(list(keys))

    def batch(self, table: str) -> int:
        """Keys per lookup of ``table``: one array parameter on PostgreSQL, else one each."""
        single = len(self.info(table).primary_key) == 1
        return _ANY_BATCH if self.dialect == "postgresql" and single else _BATCH

    def rows(
        self, conn: sa.Connection, table: str, keys: Iterable[Key]
    ) -> dict[Key, dict[str, Any]]:
        import sqlalchemy as sa

        t = self.tables[table]
        pk = self.info(table).primary_key
        pending = sorted(set(keys), key=repr)
        out: dict[Key, dict[str, Any]] = {}
        for chunk in _chunks(pending, self.batch(table)):
            query = sa.select(t).where(self.has_key(table, chunk))
            for r in conn.execute(query).mappings():
                row = dict(r)
                out[tuple(row[c] for c in pk)] = row
        return out

    def keys_in(self, conn: sa.Connection, table: str, keys: Iterable[Key]) -> set[Key]:
        """Which of ``keys`` are primary keys of rows of ``table``."""
        import sqlalchemy as sa

        t = self.tables[table]
        cols = [t.c[c] for c in self.info(table).primary_key]
        pending = sorted(set(keys), key=repr)
        out: set[Key] = set()
        for chunk in _chunks(pending, self.batch(table)):
            query = sa.select(*cols).where(self.has_key(table, chunk))
            out.update(tuple(r) for r in conn.execute(query).all())
        return out

    def text_digests(
        self,
        conn: sa.Connection,
        table: str,
        columns: Sequence[str],
        keys: Iterable[Key],
    ) -> dict[Key, str]:
        """The COPY-text digest of each row of ``table`` whose key is in ``keys`` (see ``_copy_fast``)."""
        from carmigrate.records.lowlevel import (
            CopyCodec,
            apply_copy_settings,
            copy_lines,
        )

        pk = self.info(table).primary_key[0]
        driver = conn.connection.driver_connection
        assert driver is not None
        apply_copy_settings(driver)
        codec = CopyCodec(driver, table, columns)
        pk_i = list(columns).index(pk)
        out: dict[Key, str] = {}
        pending = sorted({k[0] for k in keys})
        lines = copy_lines(driver, table, columns, order_by=pk, keys=pending)
        with contextlib.closing(lines):
            for line in lines:
                fields = line[:-1].split(b"\t")
                key = (codec.load(pk_i, fields[pk_i]),)
                out[key] = _text_digest(line).hex()
        return out

    def all_rows(self, conn: sa.Connection, table: str) -> dict[Key, dict[str, Any]]:
        import sqlalchemy as sa

        pk = self.info(table).primary_key
        return {
            tuple(r[c] for c in pk): dict(r)
            for r in conn.execute(sa.select(self.tables[table])).mappings()
        }

    def keys(self, conn: sa.Connection, table: str) -> set[Key]:
        import sqlalchemy as sa

        t = self.tables[table]
        pk = self.info(table).primary_key
        return {tuple(r) for r in conn.execute(sa.select(*(t.c[c] for c in pk))).all()}

    def where_key(self, table: str, key: Key) -> Any:
        import sqlalchemy as sa

        t = self.tables[table]
        pk = self.info(table).primary_key
        return sa.and_(*(t.c[c] == v for c, v in zip(pk, key, strict=True)))


# -- executing -----------------------------------------------------------------------


def execute_records(
    plan: RecordPlan,
    ledger: Ledger,
    *,
    source: str | sa.URL,
    destination: str | sa.URL,
    batch_size: int = 1000,
    hook: Hook | None = None,
) -> RecordRunResult:
    """Execute a record plan stage by stage, or resume it: committed stages are skipped.

    Each stage is one transaction at the destination: its rows are read
    from the source (each must still have the digest the plan recorded),
    given their planned values, and inserted in batches (a savepoint per
    batch) in an order that honours the foreign keys the stage does not
    break; merged rows insert nothing. Cycle breaks follow the plan:
    ``"update"`` columns are inserted NULL and updated once the stage's rows
    are in, ``"deferred"`` constraints are set ``DEFERRED`` (PostgreSQL).

    From PostgreSQL to PostgreSQL (psycopg 3), a table of a stage without
    ``INSERT`` triggers, with a one-column primary key and a
    [TextFingerprint][carmigrate.records.TextFingerprint] in the plan, is
    streamed instead: its source rows are read as ``COPY`` text (their
    digest must equal the fingerprint, else the table takes the row-by-row
    path, which names the row that changed), each planned insert's changed
    fields are rewritten in the text, the lines are loaded with ``COPY``,
    read back, and compared line by line with what was sent (rows whose
    text differs are compared as values). Its checkpoint records the
    digest of each row's text.

    Destination triggers run. Rows a trigger creates are found by comparing
    the destination's keys before and after each triggered table's rows: a
    trigger row with the same unique key as a row the stage plans to
    insert is *adopted* (deleted, references to it from the stage's rows
    set to their planned values, and the planned row inserted), any other
    trigger row is kept and recorded (a rollback deletes it); rows that
    existed before and that a trigger changed get before-images. A trigger
    that changes a planned row's own values fails the digest check.

    Before the commit, in the same transaction, the integrity checks run:
    each stage table's row count is its count before plus the rows
    inserted and kept trigger rows; every inserted row's digest,
    restricted to the source's columns, equals the digest of the source row
    with the plan's changes applied; every merged row's target exists;
    every foreign key of an inserted row resolves; no unique key (nor
    primary key) of a stage table is duplicated. Then the stage's
    checkpoint is written to the destination's marker table
    (``carmigrate_record_stages``), the transaction commits, and the
    checkpoint is copied into the ledger as a unit of kind
    ``record-stage``.

    Calling it again with the same plan and ledger resumes: stages whose
    checkpoint is in the destination's marker table are skipped (and their
    checkpoint copied into the ledger if a kill came between the commit
    and the ledger), the first other stage runs from its start.

    Args:
        plan: The record plan (its conflicts must be resolved).
        ledger: The ledger recording the checkpoints; bound to the plan by
            its id on first use.
        source: The source database's URL (read only).
        destination: The destination database's URL.
        batch_size: Rows per insert batch (and savepoint).
        hook: Called as ``hook(event, stage, n)`` at ``"batch"`` (after
            batch ``n`` of the stage's inserts), ``"checks"`` (before the
            integrity checks), ``"committed"`` (after the destination
            commit, before the ledger checkpoint): for progress and fault
            injection in tests.

    Returns:
        The stages run, already committed, and repaired.

    Raises:
        PreflightError: The plan has findings whose policy is ``fail``.
        PlanError: The ledger records another plan, or another run holds it.
        RecordsIntegrityError: A stage failed its integrity checks; it was
            rolled back (earlier stages stay committed) and the ledger
            records it as failed.
        RecordsError: A source row changed since planning, a planned key is
            already at the destination, or a database failed; the stage
            was rolled back.
    """
    if batch_size < 1:
        msg = f"batch_size must be at least 1, not {batch_size}"
        raise RecordsError(msg)
    plan.raise_for_conflicts()
    plan_id = plan.id
    _bind(ledger, plan_id)
    ledger._lock()
    from carmigrate.records import open_database

    dst = _Destination(destination)
    src = open_database(source)
    try:
        payloads = _sync(ledger, dst, plan_id)
        executed: list[StageCheckpoint] = []
        index: dict[str, _TablePlan] | None = None
        already: list[str] = []
        repaired = [n for n, p in payloads.items() if p.get("repaired_now")]
        for position, stage in enumerate(plan.stages):
            payload = payloads.get(stage.name)
            if payload is not None and payload["state"] == "committed":
                if stage.name not in repaired:
                    already.append(stage.name)
                continue
            if index is None:
                index = _index(plan)
            run = _StageRun(
                plan, index, plan_id, position, stage, src, dst, batch_size, hook
            )
            try:
                done = run.execute()
            except RecordsIntegrityError as e:
                _record(ledger, run.failed_payload(e.problems))
                raise
            except RecordsError as e:
                _record(ledger, run.failed_payload((str(e),)))
                raise
            if hook is not None:
                hook("committed", stage.name, 0)
            _record(ledger, done, run.payload_json)
            executed.append(_checkpoint(done))
        return RecordRunResult(
            plan_id=plan_id,
            executed=tuple(executed),
            already=tuple(already),
            repaired=tuple(repaired),
        )
    finally:
        src.close()
        dst.close()
        ledger._unlock()


def _sync(ledger: Ledger, dst: _Destination, plan_id: str) -> dict[str, dict[str, Any]]:
    """Bring the ledger in line with the destination's marker table; the stages' payloads."""
    markers = dst.markers(plan_id)
    payloads = _payloads(ledger)
    for name, marker in markers.items():
        mine = payloads.get(name)
        if mine is None or mine["state"] != "committed":
            fixed = {**marker, "repaired": True}
            _record(ledger, fixed)
            payloads[name] = {**fixed, "repaired_now": True}
    for name, mine in list(payloads.items()):
        if mine["state"] == "committed" and name not in markers:
            # committed in the ledger, absent at the destination: a rollback
            # was killed after its destination commit
            fixed = {**mine, "state": "rolled-back", "finished": time.time()}
            _record(ledger, fixed)
            payloads[name] = fixed
    return payloads


class _StageRun:
    """One stage's execution (state: the rows planned, inserted and found)."""

    def __init__(
        self,
        plan: RecordPlan,
        index: Mapping[str, _TablePlan],
        plan_id: str,
        position: int,
        stage: RecordStage,
        src: Any,
        dst: _Destination,
        batch_size: int,
        hook: Hook | None,
    ) -> None:
        self.plan_id = plan_id
        self.position = position
        self.stage = stage
        self.src = src
        self.dst = dst
        self.batch_size = batch_size
        self.hook = hook
        tables = set(stage.tables)
        parts = {t: index[t] for t in stage.tables if t in index}
        self.inserts: dict[str, list[Any]] = {
            t: p.inserts for t, p in parts.items() if p.inserts
        }
        self.merges: dict[str, list[Any]] = {
            t: p.merges for t, p in parts.items() if p.merges
        }
        self.id_map = [e for p in parts.values() for e in p.id_map]
        self.update_cols: dict[str, set[str]] = defaultdict(set)
        self.deferred: list[str | None] = []
        for b in stage.cycle_breaks:
            if b.method == "deferred" and dst.dialect == "postgresql":
                self.deferred.append(b.constraint)
            else:
                self.update_cols[b.table] |= set(b.columns)
        # (table, key) -> planned row values, and the source's columns
        self.expected: dict[str, dict[Key, dict[str, Any]]] = defaultdict(dict)
        self.columns: dict[str, tuple[str, ...]] = {}
        self.done: dict[str, set[Key]] = defaultdict(set)
        self.fixups: dict[tuple[str, Key], dict[str, Any]] = {}
        self.trigger_rows: dict[str, set[Key]] = defaultdict(set)
        self.adopted = 0
        self.payload_json: str | None = None
        # tables loaded as PostgreSQL COPY text (see _copy_fast), with their
        # checkpoint digests and what was sent
        self.fingerprints = {f.table: f for f in plan.fingerprints if f.table in tables}
        self.scope_keys = {t: p.keys for t, p in parts.items()}
        self.fast: set[str] = set()
        self.sent: dict[str, _Sent] = {}
        # table -> (keys, their digests), for the checkpoint
        self.text_digests: dict[str, tuple[list[Any], list[str]]] = {}

    # -- payloads ------------------------------------------------------------

    def _payload(self, state: str) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "stage": self.stage.name,
            "position": self.position,
            "state": state,
            "finished": time.time(),
        }

    def failed_payload(self, problems: Sequence[str]) -> dict[str, Any]:
        return {**self._payload("failed"), "problems": list(problems)}

    # -- the stage -------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        # a stage allocates millions of short-lived, acyclic objects (lines,
        # keys, digests) next to a plan of millions more: the cyclic
        # collector's passes over that heap cost about a fifth of a large
        # stage, so it pauses for the stage and runs again afterwards
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            return self._execute()
        finally:
            if paused:
                gc.enable()

    def _execute(self) -> dict[str, Any]:
        import sqlalchemy as sa

        try:
            order = self._order()
            triggered = any(
                "INSERT" in tr.events for t in order for tr in self.dst.info(t).triggers
            )
            self.fast = self._fast_tables(triggered)
            for table in self.inserts:
                if table not in self.fast:
                    self._read_table(table)
            with self.dst.engine.connect() as conn, conn.begin():
                return self._run(conn, order, triggered)
        except (RecordsError, PlanError):
            raise
        except sa.exc.SQLAlchemyError as e:
            msg = f"stage {self.stage.name!r} at {self.dst.url} failed and was rolled back: {e}"
            raise RecordsError(msg) from e

    def _read_table(self, table: str) -> None:
        """Read the table's planned source rows, each checked against its planned digest."""
        rows = self.inserts.get(table, [])
        info = self.dst.info(table)
        wanted = {r.key: r for r in rows}
        seen = 0
        for srow in self.src.iter_rows(table, keys=list(wanted)):
            key = tuple(srow[c] for c in info.primary_key)
            r = wanted[key]
            if _digest(srow) != r.digest:
                msg = (
                    f"source row {table} {key!r} changed since the plan was made; "
                    "make a new plan"
                )
                raise RecordsError(msg, table=table)
            seen += 1
            self.columns.setdefault(table, tuple(srow))
            assert r.target_key is not None
            self.expected[table][tuple(r.target_key)] = {**srow, **r.changes}
        if seen != len(wanted):
            msg = f"{len(wanted) - seen} planned rows of {table} are no longer at the source; make a new plan"
            raise RecordsError(msg, table=table)

    def _targets(self, table: str) -> list[Key]:
        """The destination keys of the table's planned inserts."""
        return [
            tuple(r.target_key) for r in self.inserts.get(table, ()) if r.target_key
        ]

    def _fast_tables(self, triggered: bool) -> set[str]:
        """The stage's tables that can be loaded as COPY text (see ``_copy_fast``)."""
        if triggered or not self.fingerprints:
            return set()
        if not (_is_psycopg(self.dst.engine) and _is_psycopg(self.src.engine)):
            return set()
        out: set[str] = set()
        for t, fp in self.fingerprints.items():
            info = self.dst.info(t)
            if (
                t in self.update_cols
                or not self.inserts.get(t)
                or len(info.primary_key) != 1
                or tuple(c.name for c in self.src.table(t).columns) != fp.columns
                or not set(fp.columns) <= set(info.column_names)
                or info.primary_key[0] not in fp.columns
                or any(c not in fp.columns for r in self.inserts[t] for c in r.changes)
            ):
                continue
            out.add(t)
        return out

    def _order(self) -> list[str]:
        """The stage's tables: foreign keys it does not break first, triggered tables early."""
        tables = list(self.stage.tables)
        broken = {(b.table, b.columns) for b in self.stage.cycle_breaks}
        deps: dict[str, set[str]] = {t: set() for t in tables}
        for t in tables:
            for fk in self.dst.info(t).foreign_keys:
                if (
                    fk.referred_table in deps
                    and fk.referred_table != t
                    and (t, fk.columns) not in broken
                ):
                    deps[t].add(fk.referred_table)

        def rank(t: str) -> tuple[int, int]:
            has = any("INSERT" in tr.events for tr in self.dst.info(t).triggers)
            return (0 if has else 1, tables.index(t))

        order: list[str] = []
        while deps:
            ready = sorted((t for t, d in deps.items() if not d), key=rank)
            if not ready:  # pragma: no cover - the planner broke every cycle
                msg = f"stage {self.stage.name!r}: tables {sorted(deps)} depend on each other"
                raise RecordsError(msg)
            t = ready[0]
            order.append(t)
            del deps[t]
            for d in deps.values():
                d.discard(t)
        return order

    def _run(
        self, conn: sa.Connection, order: list[str], triggered: bool
    ) -> dict[str, Any]:
        import sqlalchemy as sa

        self.dst.marker.create(conn, checkfirst=True)
        if self.dst.dialect == "postgresql":
            # psycopg prepares a statement run five times, and PostgreSQL may
            # then pick a generic plan: for the key lookups (``IN`` of up to
            # 1000 parameters) on tables growing in this transaction, a
            # sequential scan comparing each row with every parameter
            conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
            for name in self.deferred:
                target = "ALL" if name is None else _quote(conn, name)
                conn.exec_driver_sql(f"SET CONSTRAINTS {target} DEFERRED")
        counts = {
            t: int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(self.dst.tables[t])
                ).scalar_one()
            )
            for t in order
        }
        # a fast table's keys are checked by its primary key (see below)
        self._check_free(conn, [t for t in order if t not in self.fast])
        before: dict[str, dict[Key, dict[str, Any]]] = {}
        if triggered:
            before = {t: self.dst.all_rows(conn, t) for t in self._watched()}
        batch = 0
        copy = _can_copy(conn)
        for table in order:
            if table in self.fast:
                import psycopg

                try:
                    with conn.begin_nested():
                        batch = self._copy_fast(conn, table, batch)
                except psycopg.errors.UniqueViolation as e:
                    # a planned key is taken: say which, as for other tables
                    self._check_free(conn, [table])
                    msg = f"stage {self.stage.name!r}: loading {table} at {self.dst.url} failed: {e}"
                    raise RecordsError(msg, table=table) from e
                except psycopg.Error as e:
                    msg = f"stage {self.stage.name!r}: loading {table} at {self.dst.url} failed: {e}"
                    raise RecordsError(msg, table=table) from e
                except _NotFast:
                    # the source's text differs from the plan's fingerprint
                    # (or cannot be written as is): check and load row by row
                    self.fast.discard(table)
                    self.sent.pop(table, None)
                    self._read_table(table)
            if table not in self.fast:
                batch = self._insert(conn, table, batch, copy)
            if triggered and any(
                "INSERT" in tr.events for tr in self.dst.info(table).triggers
            ):
                self._reconcile(conn, before)
        for (table, key), held in sorted(self.fixups.items(), key=repr):
            conn.execute(
                self.dst.tables[table]
                .update()
                .where(self.dst.where_key(table, key))
                .values(held)
            )
        self._analyze(conn, order)
        updated: dict[str, list[Any]] = {}
        if triggered:
            updated = self._changed(conn, before)
        self._sequences(conn, order)
        if self.hook is not None:
            self.hook("checks", self.stage.name, batch)
        problems = self._checks(conn, order, counts)
        if problems:
            msg = (
                f"stage {self.stage.name!r} failed {len(problems)} integrity checks "
                f"and was rolled back; first: {problems[0]}"
            )
            raise RecordsIntegrityError(msg, stage=self.stage.name, problems=problems)
        payload = self._payload("committed")
        payload.update(
            order=order,
            inserted={t: self._digests(conn, t) for t in order if self.done[t]},
            text_columns={t: list(self.sent[t].columns) for t in self.text_digests},
            trigger_rows={
                t: [
                    [_enc_key(k), _digest(r)]
                    for k, r in sorted(self.dst.rows(conn, t, keys).items(), key=repr)
                ]
                for t, keys in self.trigger_rows.items()
                if keys
            },
            updated=updated,
            nulls={t: sorted(c) for t, c in self.update_cols.items()},
            id_map=self.id_map,
            counts={
                "inserted": sum(len(k) for k in self.done.values()),
                "merged": sum(len(m) for m in self.merges.values()),
                "trigger_rows": sum(len(k) for k in self.trigger_rows.values()),
                "adopted": self.adopted,
                "updated": sum(len(u) for u in updated.values()),
            },
        )
        self.payload_json = _dumps(payload)
        conn.execute(
            self.dst.marker.insert().values(
                plan_id=self.plan_id, stage=self.stage.name, payload=self.payload_json
            )
        )
        return payload

    def _insert(self, conn: sa.Connection, table: str, batch: int, copy: bool) -> int:
        """Insert the table's expected rows in batches (a savepoint each); the batch count."""
        rows = sorted(self.expected[table].items(), key=lambda kv: repr(kv[0]))
        cols = self.update_cols.get(table, set())
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            values = []
            for key, row in chunk:
                held = {c: row[c] for c in cols if row.get(c) is not None}
                if held:
                    self.fixups[table, key] = held
                values.append({c: (None if c in cols else v) for c, v in row.items()})
            with conn.begin_nested():
                if copy:
                    _copy_rows(conn, self.dst.tables[table], values)
                else:
                    conn.execute(self.dst.tables[table].insert(), values)
            self.done[table].update(k for k, _ in chunk)
            batch += 1
            if self.hook is not None:
                self.hook("batch", self.stage.name, batch)
        return batch

    def _copy_fast(self, conn: sa.Connection, table: str, batch: int) -> int:
        """Stream the table's source rows as COPY text into the destination, mapped on the way.

        The source's lines (every row in the plan's scope, in key order) are
        digested and must match the plan's fingerprint: then no planned row
        changed since planning, and no row needs decoding beyond its key.
        Each planned insert's line gets its changed fields rewritten and is
        sent to the destination's ``COPY ... FROM STDIN``; each line sent
        is digested for the read-back check. Raises ``_NotFast`` (after
        loading: the caller rolls the savepoint back) when the digest
        differs or a value cannot be written as text.
        """
        from carmigrate.records.lowlevel import CopyCodec, apply_copy_settings

        fp = self.fingerprints[table]
        pk = self.dst.info(table).primary_key[0]
        driver = conn.connection.driver_connection
        assert driver is not None
        if not self.sent:
            apply_copy_settings(driver)
        codec = CopyCodec(driver, table, fp.columns)
        index = {c: i for i, c in enumerate(fp.columns)}
        pk_i = index[pk]
        load_key = codec.loader(pk_i)
        dumpers = {c: (i, codec.dumper(i)) for c, i in index.items()}
        planned = {r.key[0]: r for r in self.inserts[table]}
        lines = self.src.copy_lines(
            table, fp.columns, keys=self.scope_keys[table] if fp.filtered else None
        )
        if lines is None:  # pragma: no cover - _fast_tables checked the dialect
            raise _NotFast
        seen = hashlib.sha256()
        count = 0
        expected: dict[Any, bytes] = {}
        prep = conn.dialect.identifier_preparer
        statement = (
            f"COPY {prep.quote(table)} "
            f"({', '.join(prep.quote(c) for c in fp.columns)}) FROM STDIN"
        )
        out: list[bytes] = []
        size = self.batch_size
        digest = _text_digest
        try:
            # the source's COPY must end before its connection can be used
            # (or closed) again, whatever stops this loop
            with (
                contextlib.closing(lines),
                driver.cursor() as cursor,
                cursor.copy(statement) as dest,
            ):
                for line in lines:
                    seen.update(line)
                    count += 1
                    fields = line[:-1].split(b"\t")
                    r = planned.get(load_key(fields[pk_i]))
                    if r is None:
                        continue
                    for c, v in r.changes.items():
                        i, dump = dumpers[c]
                        fields[i] = dump(v)
                    text = b"\t".join(fields) + b"\n"
                    expected[r.target_key[0]] = digest(text)
                    out.append(text)
                    if len(out) >= size:
                        dest.write(b"".join(out))
                        out.clear()
                        batch += 1
                        if self.hook is not None:
                            self.hook("batch", self.stage.name, batch)
                if out:
                    dest.write(b"".join(out))
                    batch += 1
        except RecordsError as e:
            raise _NotFast from e
        if count != fp.rows or seen.hexdigest() != fp.sha256:
            raise _NotFast
        if len(expected) != len(planned):  # pragma: no cover - keys are unique
            raise _NotFast
        if out and self.hook is not None:
            self.hook("batch", self.stage.name, batch)
        self.sent[table] = _Sent(codec=codec, columns=fp.columns, expected=expected)
        self.done[table].update((k,) for k in expected)
        return batch

    def _check_fast(self, conn: sa.Connection, table: str) -> list[str]:
        """Read the loaded rows back as COPY text and compare each with the line sent.

        Fills the table's checkpoint digests (BLAKE2b-128 of each row's
        line). A difference is checked again value by value (a JSON
        document or a number may be written differently and still be
        equal); a real one is a problem.
        """
        from carmigrate.records.lowlevel import copy_lines

        sent = self.sent[table]
        pk = self.dst.info(table).primary_key[0]
        pk_i = sent.columns.index(pk)
        load_key = sent.codec.loader(pk_i)
        driver = conn.connection.driver_connection
        assert driver is not None
        keys: list[Any] = []
        digests: list[str] = []
        differ = 0
        expected = sent.expected
        digest = _text_digest
        lines = copy_lines(
            driver, table, sent.columns, order_by=pk, keys=sorted(expected)
        )
        with contextlib.closing(lines):
            for line in lines:
                key = load_key(line[:-1].split(b"\t", pk_i + 1)[pk_i])
                d = digest(line)
                if expected.get(key) != d:
                    differ += 1
                keys.append(key)
                digests.append(d.hex())
        if not differ and len(keys) == len(expected):
            self.text_digests[table] = (keys, digests)
            return []
        # compare the rows as values
        self._read_table(table)
        self.columns.setdefault(table, sent.columns)
        return self._check_rows(conn, table)

    def _digests(self, conn: sa.Connection, t: str) -> list[list[Any]]:
        """``[encoded key, digest]`` of every row the stage inserted into ``t``, in key order."""
        if t in self.text_digests:
            keys, digests = self.text_digests[t]
            return [[_enc_key((k,)), d] for k, d in zip(keys, digests, strict=True)]
        return [
            [_enc_key(k), _digest(r)]
            for k, r in sorted(self.dst.rows(conn, t, self.done[t]).items(), key=repr)
        ]

    def _analyze(self, conn: sa.Connection, order: list[str]) -> None:
        """Refresh PostgreSQL's statistics of tables that grew a lot in this stage.

        The integrity checks query the rows just inserted; with statistics
        that still describe the table before, the server plans them as
        for a few rows (a sequential scan comparing each row with a whole
        key array). ``ANALYZE`` counts the transaction's own rows.
        """
        if self.dst.dialect != "postgresql":
            return
        for t in order:
            if len(self.done[t]) >= _ANALYZE_AFTER:
                conn.exec_driver_sql(f"ANALYZE {_quote(conn, t)}")

    def _watched(self) -> list[str]:
        return [
            t.name
            for t in self.dst.schema
            if t.name in self.dst.tables and t.primary_key
        ]

    def _check_free(self, conn: sa.Connection, order: list[str]) -> None:
        """Refuse when a planned key is already at the destination (it changed since planning)."""
        for t in order:
            taken = self.dst.keys_in(conn, t, self._targets(t))
            if taken:
                key = sorted(taken, key=repr)[0]
                msg = (
                    f"{len(taken)} keys the plan inserts into {t} are already at the "
                    f"destination (first {key!r}): it changed since planning; make a new plan"
                )
                raise RecordsError(msg, table=t)

    def _reconcile(
        self, conn: sa.Connection, before: Mapping[str, Mapping[Key, Any]]
    ) -> None:
        """Adopt or record the rows triggers created (see execute_records)."""
        for table in self._watched():
            new = (
                self.dst.keys(conn, table)
                - set(before.get(table, {}))
                - self.done[table]
                - self.trigger_rows[table]
            )
            if not new:
                continue
            rows = self.dst.rows(conn, table, new)
            info = self.dst.info(table)
            pending = {
                k: r
                for k, r in self.expected.get(table, {}).items()
                if k not in self.done[table]
            }
            for key, row in sorted(rows.items(), key=repr):
                if self._duplicates(info, row, pending.values()):
                    self._adopt(conn, table, key, row)
                else:
                    self.trigger_rows[table].add(key)

    @staticmethod
    def _duplicates(
        info: TableInfo, row: Mapping[str, Any], planned: Iterable[Mapping[str, Any]]
    ) -> bool:
        for p in planned:
            for u in info.unique:
                values = [row.get(c) for c in u.columns]
                if None not in values and values == [p.get(c) for c in u.columns]:
                    return True
        return False

    def _adopt(
        self, conn: sa.Connection, table: str, key: Key, row: Mapping[str, Any]
    ) -> None:
        """Delete a trigger row that duplicates a planned row, unhooking the stage's references to it."""
        for info in self.dst.schema:
            if info.name not in self.dst.tables:
                continue
            for fk in info.foreign_keys:
                if fk.referred_table != table:
                    continue
                t = self.dst.tables[info.name]
                cond = [
                    t.c[c] == row[r]
                    for c, r in zip(fk.columns, fk.referred_columns, strict=True)
                ]
                import sqlalchemy as sa

                refs = conn.execute(
                    sa.select(*(t.c[c] for c in info.primary_key)).where(*cond)
                ).all()
                for ref in refs:
                    rkey = tuple(ref)
                    planned = self.expected.get(info.name, {}).get(rkey)
                    if rkey not in self.done[info.name] or planned is None:
                        msg = (
                            f"a row a trigger created in {table} ({key!r}) duplicates a "
                            f"planned row, but {info.name} {rkey!r}, which the stage did "
                            "not insert, refers to it"
                        )
                        raise RecordsError(msg, table=table)
                    if not fk.nullable:
                        msg = (
                            f"a row a trigger created in {table} ({key!r}) duplicates a "
                            f"planned row, and {info.name}.{','.join(fk.columns)} "
                            "refers to it and cannot be NULL"
                        )
                        raise RecordsError(msg, table=table)
                    conn.execute(
                        t.update()
                        .where(self.dst.where_key(info.name, rkey))
                        .values(dict.fromkeys(fk.columns))
                    )
                    held = self.fixups.setdefault((info.name, rkey), {})
                    held.update(
                        {
                            c: planned[c]
                            for c in fk.columns
                            if planned.get(c) is not None
                        }
                    )
        conn.execute(
            self.dst.tables[table].delete().where(self.dst.where_key(table, key))
        )
        self.adopted += 1

    def _changed(
        self, conn: sa.Connection, before: Mapping[str, Mapping[Key, dict[str, Any]]]
    ) -> dict[str, list[Any]]:
        """Before-images of rows that existed before the stage and changed."""
        out: dict[str, list[Any]] = {}
        for table, rows in before.items():
            now = self.dst.rows(conn, table, rows)
            changed = []
            for key, old in sorted(rows.items(), key=repr):
                cur = now.get(key)
                if cur is None:
                    msg = f"a trigger deleted {table} {key!r}, which existed before the stage; it cannot be rolled back"
                    raise RecordsError(msg, table=table)
                if _digest(cur) != _digest(old):
                    changed.append([_enc_key(key), _enc_row(old), _digest(cur)])
            if changed:
                out[table] = changed
        return out

    def _sequences(self, conn: sa.Connection, order: list[str]) -> None:
        """Move PostgreSQL sequences past the keys inserted (so later inserts do not clash)."""
        if self.dst.dialect != "postgresql":
            return
        import sqlalchemy as sa

        for t in order:
            pk = self.dst.info(t).primary_key
            if len(pk) != 1 or not self.done[t]:
                continue
            seq = conn.execute(
                sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": t, "c": pk[0]}
            ).scalar()
            if seq is None:
                continue
            from sqlalchemy.dialects.postgresql import REGCLASS

            column = self.dst.tables[t].c[pk[0]]
            regclass = sa.cast(sa.literal(str(seq)), REGCLASS)
            top = sa.select(sa.func.max(column)).scalar_subquery()
            last = sa.func.pg_sequence_last_value(regclass)
            conn.execute(
                sa.select(
                    sa.func.setval(
                        regclass, sa.func.greatest(top, sa.func.coalesce(last, 1))
                    )
                )
            )

    def _checks(
        self, conn: sa.Connection, order: list[str], counts: Mapping[str, int]
    ) -> list[str]:
        import sqlalchemy as sa

        problems: list[str] = []
        for t in order:
            table = self.dst.tables[t]
            info = self.dst.info(t)
            want = counts[t] + len(self.done[t]) + len(self.trigger_rows.get(t, ()))
            have = int(
                conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            )
            if have != want:
                problems.append(f"{t}: {have} rows, expected {want}")
            if t in self.fast:
                problems += self._check_fast(conn, t)
            else:
                problems += self._check_rows(conn, t)
            merged = [tuple(r.target_key) for r in self.merges.get(t, ())]
            there = self.dst.rows(conn, t, merged)
            problems += [
                f"{t} {k!r}: the row a source row merges into is missing"
                for k in merged
                if k not in there
            ]
            problems += self._check_references(conn, t)
            for cols in [info.primary_key, *(u.columns for u in info.unique)]:
                group = [table.c[c] for c in cols]
                dups = conn.execute(
                    sa.select(*group)
                    .where(*(c.is_not(None) for c in group))
                    .group_by(*group)
                    .having(sa.func.count() > 1)
                    .limit(5)
                ).all()
                problems += [
                    f"{t}: ({', '.join(cols)}) = {tuple(d)!r} is not unique"
                    for d in dups
                ]
        return problems

    def _check_rows(self, conn: sa.Connection, t: str) -> list[str]:
        """Every inserted row's digest (source columns) against its expected row's."""
        problems: list[str] = []
        now = self.dst.rows(conn, t, self.expected[t])
        columns = self.columns.get(t, ())
        for key, row in sorted(self.expected[t].items(), key=repr):
            cur = now.get(key)
            if cur is None:
                problems.append(f"{t} {key!r}: inserted row is missing")
            elif _digest(cur, columns) != _digest(row, columns):
                diff = sorted(c for c in columns if cur.get(c) != row.get(c))
                problems.append(
                    f"{t} {key!r}: digest differs from the mapped source row (columns {', '.join(diff)})"
                )
        return problems

    def _check_references(self, conn: sa.Connection, t: str) -> list[str]:
        """Every foreign key of the rows the stage inserted into ``t`` resolves.

        One anti-join per foreign key and batch of keys (the statistics of
        PostgreSQL tables that grew were refreshed first, see ``_analyze``).
        """
        import sqlalchemy as sa

        info = self.dst.info(t)
        table = self.dst.tables[t]
        keys = sorted(self.done[t], key=repr)
        problems: list[str] = []
        for fk in info.foreign_keys:
            if fk.referred_table not in self.dst.tables or not keys:
                continue
            ref = self.dst.tables[fk.referred_table].alias("ref")
            cols = [table.c[c] for c in fk.columns]
            pairs = zip(fk.columns, fk.referred_columns, strict=True)
            resolves = sa.exists().where(*(ref.c[r] == table.c[c] for c, r in pairs))
            missing: set[Key] = set()
            for chunk in _chunks(keys, self.dst.batch(t)):
                query = (
                    sa.select(*cols)
                    .where(self.dst.has_key(t, chunk))
                    .where(*(c.is_not(None) for c in cols))
                    .where(~resolves)
                    .distinct()
                    .limit(20)
                )
                missing.update(tuple(v) for v in conn.execute(query).all())
            problems += [
                f"{t}: foreign key ({', '.join(fk.columns)}) = {v!r} does not resolve in {fk.referred_table}"
                for v in sorted(missing, key=repr)
            ]
        return problems


def _sqlite_transactions(engine: sa.Engine) -> None:
    """Make pysqlite transactional as SQLAlchemy documents it.

    pysqlite begins transactions lazily and not before ``SAVEPOINT``, so a
    released savepoint would commit; instead the driver's own handling is
    turned off and ``BEGIN IMMEDIATE`` (the write lock, at once) starts each
    transaction.
    """
    import sqlalchemy as sa

    def connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    def begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    sa.event.listen(engine, "connect", connect)
    sa.event.listen(engine, "begin", begin)


def _can_copy(conn: sa.Connection) -> bool:
    """Whether rows go in through ``COPY ... FROM STDIN``: PostgreSQL through psycopg 3."""
    return conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"


def _copy_rows(
    conn: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert rows (all with the same columns) with PostgreSQL's ``COPY``, in the connection's transaction.

    Each value goes through its column type's bind processor first, as
    SQLAlchemy does for an ``INSERT`` (a JSON document becomes psycopg's
    ``Json``, ``None`` in a JSON column the JSON ``null``, ...); psycopg then
    writes it in COPY's text format, which the server parses by the
    column's type. ``COPY`` fires the table's triggers as ``INSERT`` does
    (``AFTER ... FOR EACH ROW`` triggers at the end of the statement).
    """
    if not rows:
        return
    dialect = conn.dialect
    columns = list(rows[0])
    processors = [
        table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns
    ]
    prep = dialect.identifier_preparer
    statement = (
        f"COPY {prep.format_table(table)} "
        f"({', '.join(prep.quote(c) for c in columns)}) FROM STDIN"
    )
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(
                [
                    row[c] if process is None else process(row[c])
                    for c, process in zip(columns, processors, strict=True)
                ]
            )


def _quote(conn: sa.Connection, name: str) -> str:
    return str(conn.dialect.identifier_preparer.quote(name))


# -- rolling back ---------------------------------------------------------------------


def rollback_records(
    ledger: Ledger,
    destination: str | sa.URL,
    *,
    stage: str,
    force: bool = False,
) -> RecordRollbackResult:
    """Undo one committed record stage at the destination, in one transaction.

    Deletes exactly the rows the stage inserted and the trigger rows it
    kept (trigger rows first, then the stage's tables in reverse insert
    order, after setting its insert-then-update cycle columns NULL), and
    restores the before-images of rows that existed before and that it
    changed; then deletes the stage's marker row and records the stage as
    ``rolled-back`` in the ledger (executing the plan again redoes it).

    Before changing anything, every one of those rows is compared with the
    digest the checkpoint recorded at commit: a row changed or deleted
    since is someone else's change, and the call refuses.

    Args:
        ledger: The ledger holding the stage's checkpoint.
        destination: The destination database's URL.
        stage: The stage's name.
        force: Roll back even over rows changed since (their changes are
            lost; rows already gone are skipped).

    Returns:
        What was deleted and restored, and the rows that had changed.

    Raises:
        RollbackRefused: Rows changed since the stage (and not ``force``);
            nothing was changed.
        RecordsError: The stage is not committed, a later stage is still
            committed (roll it back first), or the database failed (the
            transaction was rolled back).
    """
    import sqlalchemy as sa

    plan_id = ledger._meta(_PLAN_META)
    if plan_id is None:
        msg = f"ledger {ledger.path!r} records no record plan"
        raise RecordsError(msg)
    ledger._lock()
    dst = _Destination(destination)
    try:
        payloads = _sync(ledger, dst, plan_id)
        payload = payloads.get(stage)
        if payload is None or payload["state"] != "committed":
            state = "not run" if payload is None else payload["state"]
            msg = f"record stage {stage!r} is {state}, not committed; nothing to roll back"
            raise RecordsError(msg)
        later = sorted(
            n
            for n, p in payloads.items()
            if p["state"] == "committed" and p["position"] > payload["position"]
        )
        if later:
            msg = f"record stage {stage!r} is followed by committed stages {later}; roll those back first"
            raise RecordsError(msg)
        try:
            with dst.engine.connect() as conn, conn.begin():
                result = _undo(conn, dst, payload, force)
                conn.execute(
                    dst.marker.delete().where(
                        dst.marker.c.plan_id == plan_id, dst.marker.c.stage == stage
                    )
                )
        except sa.exc.SQLAlchemyError as e:
            msg = f"rolling back record stage {stage!r} at {dst.url} failed (nothing was changed): {e}"
            raise RecordsError(msg) from e
        _record(
            ledger,
            {
                **{k: v for k, v in payload.items() if k != "repaired_now"},
                "state": "rolled-back",
                "finished": time.time(),
            },
        )
        return result
    finally:
        dst.close()
        ledger._unlock()


def _drift(
    conn: sa.Connection,
    dst: _Destination,
    rows: Mapping[str, Sequence[tuple[Key, str]]],
    text_columns: Mapping[str, Sequence[str]] | None = None,
) -> Iterator[tuple[str, Key, dict[str, Any] | None]]:
    """``(table, key, row now or None)`` of each row whose digest is not the recorded one.

    ``rows`` maps tables to ``(key, digest)`` as a checkpoint recorded them;
    rollback refuses on these rows, and verify reports them. The rows of a
    table in ``text_columns`` were loaded as COPY text and carry that
    text's digest, read again with those columns.
    """
    for table, pairs in rows.items():
        keys = [k for k, _ in pairs]
        columns = (text_columns or {}).get(table)
        now = dst.rows(conn, table, keys)
        if columns:
            texts = dst.text_digests(conn, table, columns, keys)
            for key, digest in pairs:
                if texts.get(key) != digest:
                    yield table, key, now.get(key)
            continue
        for key, digest in pairs:
            cur = now.get(key)
            if cur is None or _digest(cur) != digest:
                yield table, key, cur


def _undo(
    conn: sa.Connection, dst: _Destination, payload: Mapping[str, Any], force: bool
) -> RecordRollbackResult:
    stage = payload["stage"]
    inserted = {
        t: [(_dec_key(k), d) for k, d in v] for t, v in payload["inserted"].items()
    }
    triggered = {
        t: [(_dec_key(k), d) for k, d in v] for t, v in payload["trigger_rows"].items()
    }
    updated = {
        t: [(_dec_key(k), _dec_row(b), d) for k, b, d in v]
        for t, v in payload["updated"].items()
    }
    changed: list[str] = []
    for group in (inserted, triggered):
        for t, k, cur in _drift(conn, dst, group, payload.get("text_columns")):
            what = "deleted" if cur is None else "changed"
            changed.append(f"{t} {k!r}: {what} since the stage")
    before = {t: [(k, d) for k, _, d in urows] for t, urows in updated.items()}
    changed += [
        f"{t} {k!r}: changed since the stage" for t, k, _ in _drift(conn, dst, before)
    ]
    if changed and not force:
        msg = (
            f"{len(changed)} rows of record stage {stage!r} changed since it committed "
            f"(first: {changed[0]}); pass force=True to roll back anyway"
        )
        raise RollbackRefused(msg, stage=stage, changed=changed)
    if dst.dialect == "postgresql":
        conn.exec_driver_sql("SET CONSTRAINTS ALL DEFERRED")
    for t, cols in payload.get("nulls", {}).items():
        for k, _ in inserted.get(t, ()):
            conn.execute(
                dst.tables[t]
                .update()
                .where(dst.where_key(t, k))
                .values(dict.fromkeys(cols))
            )
    deleted = 0
    order = list(payload["order"])
    for group, tables in (
        (triggered, sorted(triggered)),
        (inserted, list(reversed(order))),
    ):
        for t in tables:
            for k, _ in group.get(t, ()):
                deleted += conn.execute(
                    dst.tables[t].delete().where(dst.where_key(t, k))
                ).rowcount
    restored = 0
    for t, urows in updated.items():
        pk = dst.info(t).primary_key
        for k, before, _ in urows:
            values = {c: v for c, v in before.items() if c not in pk}
            restored += conn.execute(
                dst.tables[t].update().where(dst.where_key(t, k)).values(values)
            ).rowcount
    return RecordRollbackResult(
        stage=stage, deleted=deleted, restored=restored, changed=tuple(changed)
    )
