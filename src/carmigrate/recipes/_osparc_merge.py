"""Merge one oSPARC deployment into another: projects, their rows and their objects.

[merge_osparc_deployments][carmigrate.recipes.merge_osparc_deployments]
moves every project of deployment A (or those of chosen users, or chosen
projects) into deployment B, one project at a time, in this order:

1. **pre-flight** of every chosen project before anything is written: each
   is staged and planned with the shipped mapping
   ([osparc_mapping][carmigrate.recipes.osparc_mapping]); a missing owner
   (users are merged by case-folded e-mail, never created), product or
   service, or a conflict, stops the merge with all the problems listed;
2. per project: its rows are staged in the staging database and planned
   against B as it is now (integer ids offset past B's largest, the project
   UUID ``uuid5(namespace, old)``); the plan is saved in the work folder;
3. **objects first**: each object of a carried ``file_meta_data`` row is
   copied from A's bucket to B's under its remapped key, atomically and
   checked before it becomes visible against the row's ``sha256_checksum``
   or its single-part MD5 ``entity_tag``; an object nothing vouches for (a
   multipart ETag and no SHA-256, or an object under a directory row) is
   copied and reported ``unverifiable``. Each object is recorded in the
   work folder's state only once written and checked;
4. **rows after**, context by context: ``carmigrate.migrate.execute_records``
   runs the plan's stages ``platform``, ``users``, ``services``,
   ``studies`` (one transaction each, with the records layer's integrity
   checks and a checkpoint) in the project's record ledger
   ``<work>/<project>.records.db``.

Objects come before rows so that B never has a ``file_meta_data`` row
whose object is not there yet: the platform may serve a row as soon as it
is committed. An object without its row is invisible to B's users.

A kill at any point is resumed by calling the function again with the same
work folder: the saved selection, namespace and plans are used, objects
already recorded are not copied again (an object found under its new key but
not recorded, written just before the kill, is kept only if its bytes are
the source's), and committed stages are skipped by the records layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.errors import PlanError, PreflightError, VerificationError
from carmigrate.recipes._osparc_files import check_osparc_files
from carmigrate.recipes._osparc_rows import (
    CARRIED_COLUMNS,
    new_project_uuid,
    plan_osparc_project,
    preflight_problems,
    stage_osparc_project,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from carmigrate.records import RecordPlan
    from carmigrate.storage import Store

__all__ = [
    "MERGE_STATE",
    "MergedObject",
    "OsparcMerge",
    "merge_osparc_deployments",
    "rollback_osparc_merge",
    "select_osparc_projects",
]

MERGE_STATE: Final = "osparc-merge.json"
"""The merge's state file in its work folder: selection, namespace, progress."""

_CHUNK: Final = 1 << 20


@attrs.frozen
class MergedObject:
    """One object copied from A's bucket to B's.

    Attributes:
        project: The project's UUID at A.
        source_key: The object's key at A.
        key: Its key at B.
        size: Its length in bytes.
        sha256: The SHA-256 of the bytes written.
        check: What checked the bytes: ``"sha256"`` (the row's
            ``sha256_checksum``), ``"md5"`` (its single-part ``entity_tag``)
            or ``"unverifiable"`` (nothing at A vouches for them; copied as
            read).
    """

    project: str
    source_key: str
    key: str
    size: int
    sha256: str
    check: str


@attrs.frozen
class OsparcMerge:
    """What a merge did.

    Attributes:
        projects: Each merged project's UUID at A and at B, in merge order.
        objects: The objects copied (every one, also those of earlier
            interrupted runs).
        rows: Rows inserted at B, per table.
        preflight: The pre-flight's informational lines (user merges,
            findings and their policies).
    """

    projects: Mapping[str, str]
    objects: tuple[MergedObject, ...]
    rows: Mapping[str, int]
    preflight: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON)."""
        return {
            "projects": dict(self.projects),
            "objects": len(self.objects),
            "verified": sum(o.check != "unverifiable" for o in self.objects),
            "unverifiable": [o.key for o in self.objects if o.check == "unverifiable"],
            "rows": dict(self.rows),
            "preflight": list(self.preflight),
        }


def select_osparc_projects(
    database: str, *, users: Sequence[str] = (), projects: Sequence[str] = ()
) -> tuple[str, ...]:
    """The UUIDs of the projects a merge moves, in the order of ``projects.id``.

    With neither ``users`` nor ``projects``: every project. Otherwise the
    projects owned by a user whose e-mail (case-folded) is in ``users``,
    together with the projects in ``projects``.

    Raises:
        PlanError: A chosen project or user that the deployment does not have.
        RecordsError: The database failed.
    """
    from carmigrate.records import open_database

    with open_database(database) as db:
        owners = {
            r["id"]: str(r["email"]).casefold()
            for r in db.iter_rows("users", columns=("id", "email"))
        }
        rows = sorted(
            db.iter_rows("projects", columns=("id", "uuid", "prj_owner")),
            key=lambda r: r["id"],
        )
    wanted_users = {u.casefold() for u in users}
    unknown = sorted(wanted_users - set(owners.values()))
    if unknown:
        msg = f"no user with the e-mail {unknown[0]!r} in the source deployment"
        raise PlanError(msg)
    present = {str(r["uuid"]) for r in rows}
    missing = [p for p in projects if p not in present]
    if missing:
        msg = f"no project {missing[0]} in the source deployment"
        raise PlanError(msg)
    if not users and not projects:
        return tuple(str(r["uuid"]) for r in rows)
    return tuple(
        str(r["uuid"])
        for r in rows
        if str(r["uuid"]) in projects or owners.get(r["prj_owner"]) in wanted_users
    )


class _State:
    """The merge's progress in ``<work>/osparc-merge.json``, replaced atomically on every change."""

    def __init__(self, work: Path) -> None:
        self.path = work / MERGE_STATE
        self.data: dict[str, Any] = (
            json.loads(self.path.read_text()) if self.path.exists() else {}
        )

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def _clear_staging(staging: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(staging)
    try:
        with engine.begin() as conn:
            for name in reversed(list(CARRIED_COLUMNS)):
                conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
    finally:
        engine.dispose()


def _stage(source: str, source_store: Store, staging: str, project: str) -> list[Any]:
    """Stage the project's carried rows (files without objects left out); its files."""
    files, _ = check_osparc_files(source, source_store, project)
    skip = frozenset(
        f.file_id
        for f in files
        if not f.present
        or (f.is_soft_link and not f.object_name.startswith(f"{project}/"))
    )
    _clear_staging(staging)
    stage_osparc_project(source, staging, project, skip_files=skip)
    return [f for f in files if f.carried]


def _bucket_of(store: Store) -> str | None:
    return store.url[5:].split("/", 1)[0] if store.url.startswith("s3://") else None


def _targets(
    plan: RecordPlan, files: Sequence[Any], source_store: Store, project: str
) -> list[dict[str, Any]]:
    """Each object to copy: source key, new key, what vouches for it."""
    new_key = {c.old: c.new for c in plan.object_keys}
    out: list[dict[str, Any]] = []
    for f in files:
        base = new_key.get(f.object_name)
        if base is None:
            msg = f"{f.file_id}: no row of the plan names this file"
            raise PlanError(msg)
        if f.is_directory:
            prefix = f.object_name.rstrip("/") + "/"
            out += [
                {
                    "project": project,
                    "source_key": info.key,
                    "key": base.rstrip("/") + "/" + info.key[len(prefix) :],
                    "check": "unverifiable",
                    "expected": None,
                    "size": info.size,
                }
                for info in sorted(source_store.list(prefix), key=lambda i: i.key)
            ]
            continue
        expected = (
            f.sha256
            if f.check == "sha256"
            else str(f.entity_tag).strip('"').lower()
            if f.check == "md5"
            else None
        )
        out.append(
            {
                "project": project,
                "source_key": f.object_name,
                "key": base,
                "check": f.check,
                "expected": expected,
                "size": f.size,
            }
        )
    return out


def _digests(store: Store, key: str) -> tuple[str, str, int]:
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0  # noqa: S324 - ETag check
    with store.open_read(key) as r:
        while chunk := r.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), md5.hexdigest(), size


def _copy(source_store: Store, store: Store, t: Mapping[str, Any]) -> tuple[str, int]:
    """Copy one object, checked before it is visible; (sha256, size) of what was written."""
    from carmigrate.errors import ChecksumMismatch, SizeMismatch

    sha = hashlib.sha256()
    n = 0

    def chunks() -> Iterator[bytes]:
        nonlocal n
        with source_store.open_read(t["source_key"]) as r:
            while chunk := r.read(_CHUNK):
                sha.update(chunk)
                n += len(chunk)
                yield chunk

    checksums = {t["check"]: t["expected"]} if t["check"] in ("sha256", "md5") else None
    try:
        store.write(
            t["key"], chunks(), size=t["size"], if_absent=True, checksums=checksums
        )
    except (ChecksumMismatch, SizeMismatch) as e:
        msg = (
            f"{t['source_key']}: its bytes do not match what A's row vouches for ({e})"
        )
        raise VerificationError(msg) from e
    return sha.hexdigest(), n


def _store_has(store: Store, key: str) -> bool:
    try:
        store.stat(key)
    except FileNotFoundError:
        return False
    return True


def _copy_objects(
    source_store: Store,
    store: Store,
    targets: Sequence[Mapping[str, Any]],
    state: _State,
    hook: Callable[[str, str], None] | None,
) -> None:
    done: dict[str, Any] = state.data["objects"]
    for t in targets:
        if t["key"] in done:
            continue
        if _store_has(store, t["key"]):
            # written before a kill, not yet recorded: ours only if it holds
            # exactly A's bytes
            got, _, size = _digests(store, t["key"])
            want, _, _ = _digests(source_store, t["source_key"])
            if got != want:
                msg = f"object key taken at the destination: {t['key']}"
                raise PlanError(msg)
        else:
            got, size = _copy(source_store, store, t)
        done[t["key"]] = {**t, "sha256": got, "size": size}
        state.save()
        if hook is not None:
            hook("object", t["key"])


def merge_osparc_deployments(
    source: str,
    source_store: Store,
    destination: str,
    destination_store: Store,
    work: str | os.PathLike[str],
    *,
    staging: str,
    users: Sequence[str] = (),
    projects: Sequence[str] = (),
    namespace: uuid.UUID | None = None,
    hook: Callable[[str, str], None] | None = None,
) -> OsparcMerge:
    """Merge the projects of deployment A (``source``) into deployment B (``destination``).

    See the module for the order of the steps. The first call with a work
    folder fixes the selection and the namespace (saved in
    ``<work>/osparc-merge.json``); a later call with the same folder resumes
    (``users``, ``projects`` and ``namespace`` must then be the same or
    empty). Writes only B's database, B's bucket, the staging database and
    the work folder; reads A. Each chosen project is staged twice (for the
    pre-flight of all, then for its merge).

    Args:
        source: A's database URL.
        source_store: A's bucket (the root of ``file_meta_data.object_name``).
        destination: B's database URL.
        destination_store: B's bucket; ``file_meta_data.bucket_name`` of the
            merged rows becomes its bucket name.
        work: The merge's folder (made if missing): state, plans and one
            record ledger per project.
        staging: A PostgreSQL database for the rows of the project being
            merged (its carried tables are dropped and made again per
            project; nothing else in it is touched).
        users: Merge the projects of these users (e-mails, any case).
        projects: Merge these projects (UUIDs at A).
        namespace: The merge's namespace (fresh by default): a project's
            UUID at B is ``uuid5(namespace, old)``.
        hook: Called as ``hook("object", key)`` after each object is copied,
            checked and recorded, and ``hook("stage", "<project>:<stage>")``
            after each record stage commits (progress, tests).

    Returns:
        What was merged.

    Raises:
        PreflightError: A chosen project cannot be merged (nothing was
            written; the message lists every problem).
        VerificationError: An object's bytes at A are not what its row
            vouches for (nothing is under its new key).
        PlanError: A chosen user or project A does not have, a different
            selection than the work folder's, or a new key B already holds
            with other bytes.
        CarmigrateError: A failure of the records layer or a store; what
            was committed stays, and calling again resumes.
    """
    from carmigrate.migrate import Ledger, execute_records
    from carmigrate.records import load_record_plan, save_record_plan

    folder = Path(work)
    folder.mkdir(parents=True, exist_ok=True)
    state = _State(folder)
    if not state.data:
        chosen = select_osparc_projects(source, users=users, projects=projects)
        state.data = {
            "users": sorted(u.casefold() for u in users),
            "projects_chosen": sorted(projects),
            "namespace": str(namespace or uuid.uuid4()),
            "order": list(chosen),
            "preflight": None,
            "staged": None,
            "planned": {},
            "targets": {},
            "objects": {},
            "done": [],
        }
    elif (users or projects) and (
        sorted(u.casefold() for u in users) != state.data["users"]
        or sorted(projects) != state.data["projects_chosen"]
    ):
        msg = f"{folder} holds a merge of another selection: give a new work folder"
        raise PlanError(msg)
    elif namespace is not None and str(namespace) != state.data["namespace"]:
        msg = f"{folder} holds a merge with another namespace"
        raise PlanError(msg)
    ns = uuid.UUID(state.data["namespace"])
    order: list[str] = state.data["order"]
    bucket = _bucket_of(destination_store)

    if state.data["preflight"] is None:
        info: list[str] = []
        problems: list[str] = []
        for p in order:
            _stage(source, source_store, staging, p)
            plan = plan_osparc_project(staging, destination, p, ns, bucket=bucket)
            info += _info(plan, p)
            problems += [f"project {p}: {x}" for x in preflight_problems(plan)]
        _clear_staging(staging)
        if problems:
            state.path.unlink(missing_ok=True)  # nothing was done: start afresh
            msg = "pre-flight: " + "; ".join(problems)
            raise PreflightError(msg, problems)
        state.data["preflight"] = info
        state.save()

    for p in order:
        if p in state.data["done"]:
            continue
        plan_file = folder / f"{p}.plan.jsonl"
        if p in state.data["planned"]:
            plan = load_record_plan(plan_file)
            if state.data["staged"] != p:
                _stage(source, source_store, staging, p)
                state.data["staged"] = p
                state.save()
        else:
            files = _stage(source, source_store, staging, p)
            state.data["staged"] = p
            plan = plan_osparc_project(staging, destination, p, ns, bucket=bucket)
            problems = preflight_problems(plan)
            if problems:
                msg = f"pre-flight of project {p}: " + "; ".join(problems)
                raise PreflightError(msg, problems)
            save_record_plan(plan, plan_file)
            state.data["targets"][p] = _targets(plan, files, source_store, p)
            state.data["planned"][p] = str(plan_file.name)
            state.save()
        _copy_objects(
            source_store, destination_store, state.data["targets"][p], state, hook
        )

        def stage_hook(event: str, stage: str, n: int, project: str = p) -> None:
            if event == "committed" and hook is not None:
                hook("stage", f"{project}:{stage}")

        with Ledger(folder / f"{p}.records.db") as ledger:
            execute_records(
                plan, ledger, source=staging, destination=destination, hook=stage_hook
            )
        state.data["done"].append(p)
        state.save()
    if state.data["staged"] is not None:
        _clear_staging(staging)
        state.data["staged"] = None
        state.save()

    rows: dict[str, int] = {}
    for p in order:
        for r in load_record_plan(folder / f"{p}.plan.jsonl").rows:
            if r.action.value == "insert":
                rows[r.table] = rows.get(r.table, 0) + 1
    objects = tuple(
        MergedObject(
            project=o["project"],
            source_key=o["source_key"],
            key=o["key"],
            size=o["size"],
            sha256=o["sha256"],
            check=o["check"],
        )
        for o in state.data["objects"].values()
    )
    return OsparcMerge(
        projects={p: new_project_uuid(p, ns) for p in order},
        objects=objects,
        rows=rows,
        preflight=tuple(state.data["preflight"]),
    )


def _info(plan: RecordPlan, project: str) -> list[str]:
    from carmigrate.records import RowAction

    info = [
        f"project {project}: merge {r.table} {r.key[0]!r} into the destination's "
        f"{r.target_key!r}"
        for r in plan.rows
        if r.action is RowAction.MERGE and r.table == "users"
    ]
    info += [
        f"project {project}: {f.kind.value} ({f.policy.value}): {f.message}"
        for f in plan.findings
    ]
    return info


def rollback_osparc_merge(
    work: str | os.PathLike[str],
    source_store: Store,
    destination: str,
    destination_store: Store,
    *,
    force: bool = False,
) -> list[str]:
    """Undo a merge (finished or interrupted): its record stages, then its objects.

    Projects are undone last merged first: each committed stage of the
    project's record ledger, last first
    (``carmigrate.migrate.rollback_records``, which refuses rows changed
    since unless ``force``), then exactly the objects the merge recorded as
    written for it, and an unrecorded object under one of its new keys
    whose bytes are A's (written just before a kill); objects B had before
    are never touched. The state is
    updated after each project, so an interrupted rollback can be called
    again; calling the merge again afterwards redoes it.

    Args:
        work: The merge's folder.
        source_store: A's bucket (to recognise an unrecorded object by its
            bytes).
        destination: B's database URL.
        destination_store: B's bucket.
        force: Roll back rows changed since their stage committed, too.

    Returns:
        The keys deleted from ``destination_store``.

    Raises:
        PlanError: ``work`` holds no merge.
        RollbackRefused: A row changed since its stage committed.
    """
    from carmigrate.migrate import Ledger, record_checkpoints, rollback_records

    folder = Path(work)
    state = _State(folder)
    if not state.data:
        msg = f"{folder} holds no oSPARC merge"
        raise PlanError(msg)
    deleted: list[str] = []
    for p in reversed(state.data["order"]):
        ledger_path = folder / f"{p}.records.db"
        if ledger_path.exists():
            with Ledger(ledger_path) as ledger:
                committed = [
                    c.stage
                    for c in record_checkpoints(ledger)
                    if c.state == "committed"
                ]
                for stage in reversed(committed):
                    rollback_records(ledger, destination, stage=stage, force=force)
        if p in state.data["done"]:
            state.data["done"].remove(p)
        objects = state.data["objects"]
        for t in state.data["targets"].get(p, []):
            key = t["key"]
            if key not in objects and _store_has(destination_store, key):
                # written just before a kill, unrecorded: the merge's only if
                # it holds A's bytes (the key is new, uuid5 of the namespace)
                with_bytes = _digests(destination_store, key)[0]
                if with_bytes == _digests(source_store, t["source_key"])[0]:
                    destination_store.delete(key)
                    deleted.append(key)
        for key in [k for k, o in objects.items() if o["project"] == p]:
            if _store_has(destination_store, key):
                destination_store.delete(key)
                deleted.append(key)
            del objects[key]
            state.save()
        state.save()
    return deleted
