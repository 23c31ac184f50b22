"""Import an oSPARC project archive into a deployment: verify, pre-flight, lock, files, rows.

[import_osparc_archive][carmigrate.recipes.import_osparc_archive] runs in
the calling process, in this order, and writes nothing before step 4:

1. the archive is verified completely
   ([read_osparc_archive][carmigrate.recipes.read_osparc_archive]);
2. each project's rows are put in an empty staging database (the
   destination's column types) and planned with the shipped mapping;
3. the pre-flight report is made (collisions, merges, missing owners,
   products and services, object keys already taken); any problem stops
   the import;
4. the project is locked: a lease row (new project UUID, holder, expiry)
   in ``carmigrate_osparc_leases`` at the destination, renewed after every
   file and stage;
5. files first (each written atomically under its new key, with its size
   and SHA-256 checked before it becomes visible), then rows
   (``carmigrate.migrate.execute_records``, one checkpointed stage at a time);
6. on any failure, everything this import wrote is removed (committed
   stages rolled back, objects deleted) and the error is raised; the lease
   is released at the end either way.
"""

from __future__ import annotations

import datetime
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.errors import PlanError, PreflightError
from carmigrate.recipes._osparc_archive import read_osparc_archive
from carmigrate.recipes._osparc_rows import (
    CARRIED_COLUMNS,
    new_project_uuid,
    plan_osparc_project,
    preflight_problems,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from pathlib import Path

    from carmigrate.records import RecordPlan
    from carmigrate.storage import Store

__all__ = [
    "LEASE_SECONDS",
    "LEASE_TABLE",
    "ImportState",
    "OsparcImport",
    "import_osparc_archive",
]

LEASE_TABLE: Final = "carmigrate_osparc_leases"
"""The destination table holding one lease row per project being imported."""
LEASE_SECONDS: Final = 300
"""How long a lease lasts unless renewed; an expired lease may be taken over."""


@attrs.frozen
class OsparcImport:
    """What an import did.

    Attributes:
        project: The project's UUID at the source.
        new_project: Its UUID at the destination.
        preflight: The pre-flight report's lines (collisions, merges,
            findings and their policies); it had no problems, or nothing
            would have been written.
        objects: Keys written at the destination store.
        rows: Rows inserted, per table.
        plan: The record plan executed.
    """

    project: str
    new_project: str
    preflight: tuple[str, ...]
    objects: tuple[str, ...]
    rows: Mapping[str, int]
    plan: RecordPlan = attrs.field(repr=False)


def _stage_archive_rows(
    rows: Mapping[str, Sequence[Mapping[str, Any]]], staging: str, destination: str
) -> None:
    import sqlalchemy as sa

    from carmigrate.records import open_database

    with open_database(destination) as dst:
        tables = {t: dst.table(t) for t in CARRIED_COLUMNS}
    meta = sa.MetaData()
    made = []
    for name, table in tables.items():
        columns = list(rows[name][0]) if rows[name] else list(CARRIED_COLUMNS[name])
        missing = [c for c in columns if c not in table.c]
        if missing:
            msg = f"the destination's {name} has no column {missing[0]!r}"
            raise PlanError(msg)
        made.append(
            sa.Table(
                name,
                meta,
                *(
                    sa.Column(
                        c,
                        table.c[c].type,
                        primary_key=table.c[c].primary_key,
                        autoincrement=False,
                    )
                    for c in columns
                ),
            )
        )
    engine = sa.create_engine(staging)
    try:
        present = set(sa.inspect(engine).get_table_names()) & set(CARRIED_COLUMNS)
        if present:
            msg = f"the staging database already has the table {sorted(present)[0]!r}: give an empty one"
            raise PlanError(msg)
        with engine.begin() as conn:
            meta.create_all(conn)
            for t in made:
                if rows[t.name]:
                    conn.execute(t.insert(), [dict(r) for r in rows[t.name]])
    finally:
        engine.dispose()


class ImportState:
    """An import's progress, kept so that a killed import can resume.

    State: the import's namespace, its record plan once made, the pre-flight
    report's lines, the keys it wrote, and the lease holder's name. This
    class keeps them in memory; [save][carmigrate.recipes.ImportState.save]
    is called after every change, and a subclass that writes them somewhere
    durable (a job file) makes the import resumable.

    Args:
        holder: The name written in the lease row (a job id); a fresh one
            by default.
    """

    def __init__(self, holder: str | None = None) -> None:
        self.namespace: uuid.UUID | None = None
        self.plan: RecordPlan | None = None
        self.preflight: tuple[str, ...] = ()
        self.written: list[str] = []
        self.holder = (
            holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )

    def save(self) -> None:
        """Persist the state (nothing, here)."""


class _Lease:
    """A lease row at the destination; state: the engine, the row's key and holder."""

    def __init__(self, destination: str, project: str, holder: str) -> None:
        import sqlalchemy as sa

        self.engine = sa.create_engine(destination)
        self.project = project
        self.holder = holder
        meta = sa.MetaData()
        self.table = sa.Table(
            LEASE_TABLE,
            meta,
            sa.Column("project_uuid", sa.String, primary_key=True),
            sa.Column("holder", sa.String, nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        )
        meta.create_all(self.engine, checkfirst=True)

    def _expiry(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC) + datetime.timedelta(
            seconds=LEASE_SECONDS
        )

    def acquire(self) -> None:
        import sqlalchemy as sa

        t = self.table
        now = datetime.datetime.now(datetime.UTC)
        with self.engine.begin() as conn:
            conn.execute(
                t.delete().where(
                    t.c.project_uuid == self.project,
                    sa.or_(t.c.expires_at < now, t.c.holder == self.holder),
                )
            )
            try:
                conn.execute(
                    t.insert().values(
                        project_uuid=self.project,
                        holder=self.holder,
                        expires_at=self._expiry(),
                    )
                )
            except sa.exc.IntegrityError as e:
                msg = f"project {self.project} is locked by another import"
                raise PlanError(msg) from e

    def renew(self) -> None:
        t = self.table
        with self.engine.begin() as conn:
            done = conn.execute(
                t.update()
                .where(t.c.project_uuid == self.project, t.c.holder == self.holder)
                .values(expires_at=self._expiry())
            )
            if done.rowcount != 1:
                msg = f"the lease on project {self.project} was lost"
                raise PlanError(msg)

    def release(self) -> None:
        t = self.table
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    t.delete().where(
                        t.c.project_uuid == self.project, t.c.holder == self.holder
                    )
                )
        finally:
            self.engine.dispose()


def _report(
    plan: RecordPlan, destination: str, store: Store
) -> tuple[list[str], list[str]]:
    """(informational lines, problems) of the pre-flight."""
    import sqlalchemy as sa

    from carmigrate.records import RowAction

    info = [
        f"merge: {r.table} {r.key[0]!r} into the destination's {r.target_key!r}"
        for r in plan.rows
        if r.action is RowAction.MERGE
    ]
    info += [f"{f.kind.value} ({f.policy.value}): {f.message}" for f in plan.findings]
    problems = preflight_problems(plan)
    engine = sa.create_engine(destination)
    try:
        with engine.connect() as conn:
            for old, new in plan.mapped("projects", "uuid").items():
                if conn.execute(
                    sa.text("SELECT 1 FROM projects WHERE uuid = :u"), {"u": old}
                ).first():
                    info.append(
                        f"collision: project {old} exists at the destination; "
                        f"it is imported as {new}"
                    )
    finally:
        engine.dispose()
    for change in plan.object_keys:
        try:
            store.stat(change.new)
        except FileNotFoundError:
            continue
        problems.append(f"object key taken at the destination: {change.new}")
    return info, problems


def import_osparc_archive(
    archive: str | os.PathLike[str] | Path,
    *,
    database: str,
    store: Store,
    ledger: str | os.PathLike[str],
    staging: str,
    namespace: uuid.UUID | None = None,
    public_key: bytes | None = None,
    bucket: str | None = None,
    state: ImportState | None = None,
) -> OsparcImport:
    """Import the project of a verified one-project archive into a deployment.

    See the module for the order of the steps. A failure after the first
    write removes what this import wrote before raising (its committed
    record stages, by ``carmigrate.migrate.rollback_records``, then its
    objects); the ledger keeps the stages' record (``rolled-back``).

    Args:
        archive: The archive (exactly one project).
        database: The destination deployment's database URL.
        store: Its bucket.
        ledger: The record ledger (a SQLite file, new for each import).
        staging: An empty PostgreSQL database for the project's rows.
        namespace: The import's namespace (a fresh one by default): the new
            project UUID is ``uuid5(namespace, old)``.
        public_key: Require the archive to be signed by this Ed25519 key.
        bucket: The value for ``file_meta_data.bucket_name`` (default: the
            store's bucket name, when its URL is ``s3://bucket/...``).
        state: Where the import keeps its progress (its plan, the keys it
            wrote); given again after the process was killed, the import
            resumes: the saved plan is executed (its ledger resumes the
            record stages) and files already written are not written again.
            In memory by default.

    Returns:
        What was imported.

    Raises:
        BlockHashMismatch, FormatError, VerificationError: The archive does
            not verify (nothing was written).
        PreflightError: The pre-flight found problems (nothing was written
            but the staging rows; the message lists them).
        PlanError: Not one project, the project is locked by another
            import, or the staging database is not empty.
        CarmigrateError: A failure while writing (everything written was
            removed). An interruption that is not an ``Exception``
            (``KeyboardInterrupt``, a kill) leaves the import to be resumed.
    """
    from carmigrate.car import CarReader
    from carmigrate.migrate import (
        Ledger,
        execute_records,
        record_checkpoints,
        rollback_records,
    )

    st = state or ImportState()
    verified = read_osparc_archive(archive, public_key=public_key)
    projects = [p["uuid"] for p in verified.manifest["projects"]]
    if len(projects) != 1:
        msg = f"an import takes an archive of one project; this one has {len(projects)}"
        raise PlanError(msg)
    (project,) = projects
    (entry_of_project,) = verified.manifest["projects"]
    if st.namespace is None:
        st.namespace = namespace or uuid.uuid4()
    ns = st.namespace
    if st.plan is None:
        if bucket is None and store.url.startswith("s3://"):
            bucket = store.url[5:].split("/", 1)[0]
        _stage_archive_rows(verified.rows[project], staging, database)
        plan = plan_osparc_project(staging, database, project, ns, bucket=bucket)
        info, problems = _report(plan, database, store)
        if problems:
            msg = "pre-flight: " + "; ".join(problems)
            raise PreflightError(msg, problems)
        st.plan, st.preflight = plan, tuple(info)
        st.save()
    plan = st.plan

    targets = _targets(plan, entry_of_project["files"])
    lease = _Lease(database, new_project_uuid(project, ns), st.holder)
    try:
        lease.acquire()
        with Ledger(ledger) as record_ledger:
            try:
                with CarReader.open(verified.path) as reader:
                    for entry, key in targets:
                        if key in st.written:
                            continue

                        def chunks(
                            blocks: Sequence[Any] = entry["blocks"],
                        ) -> Iterator[bytes]:
                            for cid in blocks:
                                yield reader[cid].data

                        if _store_has(store, key):
                            # written before a kill, not yet recorded: ours only
                            # if it holds exactly the archive's bytes
                            if _sha256_of(store, key) != entry["sha256"]:
                                msg = f"object key taken at the destination: {key}"
                                raise PlanError(msg)
                        else:
                            store.write(
                                key,
                                chunks(),
                                size=entry["size"],
                                if_absent=True,
                                checksums={"sha256": entry["sha256"]},
                            )
                        st.written.append(key)
                        st.save()
                        lease.renew()

                def hook(event: str, stage: str, n: int) -> None:
                    if event == "committed":
                        lease.renew()

                execute_records(
                    plan, record_ledger, source=staging, destination=database, hook=hook
                )
            except Exception:
                done = [
                    c.stage
                    for c in record_checkpoints(record_ledger)
                    if c.state == "committed"
                ]
                for stage in reversed(done):
                    rollback_records(record_ledger, database, stage=stage)
                # every key of this import is new (the pre-flight found none
                # taken), so an object under one is this import's, recorded
                # or written just before a kill
                ours = {c.new for c in plan.object_keys} | {k for _, k in targets}
                for key in sorted(ours | set(st.written)):
                    if key in st.written or _store_has(store, key):
                        store.delete(key)
                st.written.clear()
                st.save()
                raise
    finally:
        lease.release()
    rows: dict[str, int] = {}
    for r in plan.rows:
        if r.action.value == "insert":
            rows[r.table] = rows.get(r.table, 0) + 1
    return OsparcImport(
        project=project,
        new_project=new_project_uuid(project, ns),
        preflight=st.preflight,
        objects=tuple(st.written),
        rows=rows,
        plan=plan,
    )


def _targets(
    plan: RecordPlan, files: Sequence[Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any], str]]:
    """Each file entry of the archive with its key at the destination.

    A file's key is its row's new ``object_name``; an object under a
    directory row keeps its path below the directory's new key.

    Raises:
        PlanError: A file no row of the plan names.
    """
    new_key = {c.old: c.new for c in plan.object_keys}
    out = []
    for entry in files:
        directory = entry.get("directory")
        if directory:
            base = new_key.get(directory)
            key = None if base is None else base + entry["key"][len(directory) :]
        else:
            key = new_key.get(entry["key"])
        if key is None:
            msg = f"{entry['key']}: no row of the plan names this file"
            raise PlanError(msg)
        out.append((entry, key))
    return out


def _store_has(store: Store, key: str) -> bool:
    try:
        store.stat(key)
    except FileNotFoundError:
        return False
    return True


def _sha256_of(store: Store, key: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with store.open_read(key) as r:
        while chunk := r.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
