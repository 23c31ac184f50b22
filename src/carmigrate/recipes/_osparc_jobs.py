"""oSPARC imports as jobs: a job file per import, run detached, followed, resumed after a kill.

A job is a JSON file ``<id>.json`` in the jobs folder
([jobs_folder][carmigrate.recipes.jobs_folder]) holding what to import,
its state (``queued``, ``running``, ``succeeded``, ``failed``), the process
running it and, as the import goes, its progress (the import's namespace,
its saved record plan ``<id>.plan.jsonl``, the keys it wrote). Each change
is written to a temporary file and renamed over the job file, so the file
is always whole. A job whose process died while ``running`` is reported
``interrupted``; running it again resumes it where it stopped.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.errors import PlanError
from carmigrate.recipes._osparc_import import ImportState, import_osparc_archive

if TYPE_CHECKING:
    from collections.abc import Mapping

    from carmigrate.recipes._osparc_import import OsparcImport

__all__ = [
    "JOBS_ENV",
    "JobStatus",
    "job_status",
    "jobs_folder",
    "run_osparc_import_job",
    "start_detached",
    "submit_osparc_import",
]

JOBS_ENV: Final = "CARMIGRATE_JOBS"
"""The environment variable naming the jobs folder."""


def jobs_folder() -> Path:
    """The jobs folder: ``$CARMIGRATE_JOBS``, else ``$XDG_STATE_HOME/carmigrate/jobs``, else ``~/.local/state/carmigrate/jobs``."""
    if os.environ.get(JOBS_ENV):
        return Path(os.environ[JOBS_ENV])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "carmigrate" / "jobs"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _path(job_id: str, folder: Path | None) -> Path:
    if not job_id.replace("-", "").isalnum():
        msg = f"not a job id: {job_id!r}"
        raise PlanError(msg)
    return (folder or jobs_folder()) / f"{job_id}.json"


def _write(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


def _read(job_id: str, folder: Path | None) -> dict[str, Any]:
    path = _path(job_id, folder)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        msg = f"no job {job_id} in {path.parent}"
        raise PlanError(msg) from None
    return data


def submit_osparc_import(
    archive: str,
    *,
    database: str,
    s3: str,
    ledger: str,
    staging: str,
    public_key: str | None = None,
    folder: Path | None = None,
) -> str:
    """Record a new import job (state ``queued``) and return its id; runs nothing.

    Args:
        archive: The archive's path (made absolute).
        database: The destination's database URL.
        s3: The destination's bucket URL (credentials from the environment
            of the process that runs the job).
        ledger: The record ledger's path (made absolute).
        staging: An empty PostgreSQL database for the rows.
        public_key: A file with the Ed25519 public key the archive must be
            signed with.
        folder: The jobs folder (default [jobs_folder][carmigrate.recipes.jobs_folder]).
    """
    job_id = f"osparc-import-{uuid.uuid4().hex[:12]}"
    path = _path(job_id, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(
        path,
        {
            "id": job_id,
            "kind": "osparc-import",
            "state": "queued",
            "created": _now(),
            "updated": _now(),
            "pid": None,
            "spec": {
                "archive": str(Path(archive).resolve()),
                "database": database,
                "s3": s3,
                "ledger": str(Path(ledger).resolve()),
                "staging": staging,
                "public_key": None
                if public_key is None
                else str(Path(public_key).resolve()),
            },
            "progress": {
                "namespace": None,
                "plan": None,
                "preflight": [],
                "written": [],
            },
            "error": None,
            "result": None,
        },
    )
    return job_id


class _JobState(ImportState):
    """An import's progress kept in its job file."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        super().__init__(holder=data["id"])
        from carmigrate.records import load_record_plan

        self.path = path
        self.data = data
        progress = data["progress"]
        if progress["namespace"]:
            self.namespace = uuid.UUID(progress["namespace"])
        if progress["plan"]:
            self.plan = load_record_plan(progress["plan"])
        self.preflight = tuple(progress["preflight"])
        self.written = list(progress["written"])

    def save(self) -> None:
        from carmigrate.records import save_record_plan

        progress = self.data["progress"]
        if self.plan is not None and progress["plan"] is None:
            plan_path = self.path.with_name(f"{self.data['id']}.plan.jsonl")
            save_record_plan(self.plan, plan_path)
            progress["plan"] = str(plan_path)
        progress["namespace"] = None if self.namespace is None else str(self.namespace)
        progress["preflight"] = list(self.preflight)
        progress["written"] = list(self.written)
        self.data["updated"] = _now()
        _write(self.path, self.data)


def run_osparc_import_job(job_id: str, *, folder: Path | None = None) -> OsparcImport:
    """Run a queued job, or resume an interrupted or failed one, in this process.

    The job file records the process (``running``, this pid), then the
    outcome: ``succeeded`` with the result, or ``failed`` with the error
    (after the import removed what it wrote). A job that succeeded is not
    run again.

    Raises:
        PlanError: No such job, the job succeeded already, or another live
            process runs it.
        CarmigrateError: The import's own errors (see
            [import_osparc_archive][carmigrate.recipes.import_osparc_archive]).
    """
    from carmigrate.storage import open_store

    path = _path(job_id, folder)
    data = _read(job_id, folder)
    if data["state"] == "succeeded":
        msg = f"job {job_id} succeeded already"
        raise PlanError(msg)
    if (
        data["state"] == "running"
        and _alive(data["pid"])
        and data["pid"] != os.getpid()
    ):
        msg = f"job {job_id} is running in process {data['pid']}"
        raise PlanError(msg)
    data.update(state="running", pid=os.getpid(), error=None, updated=_now())
    _write(path, data)
    state = _JobState(path, data)
    spec = data["spec"]
    key = None if spec["public_key"] is None else Path(spec["public_key"]).read_bytes()
    store = open_store(spec["s3"])
    try:
        done = import_osparc_archive(
            spec["archive"],
            database=spec["database"],
            store=store,
            ledger=spec["ledger"],
            staging=spec["staging"],
            public_key=key,
            state=state,
        )
    except Exception as e:
        data.update(state="failed", error=f"{type(e).__name__}: {e}", updated=_now())
        _write(path, data)
        raise
    finally:
        store.close()
    data.update(
        state="succeeded",
        updated=_now(),
        result={
            "project": done.project,
            "new_project": done.new_project,
            "objects": len(done.objects),
            "rows": dict(done.rows),
        },
    )
    _write(path, data)
    return done


def start_detached(job_id: str, *, folder: Path | None = None) -> int:
    """Start ``carmigrate job run ID`` in a new session, detached; return its pid.

    Its output goes to ``<id>.log`` beside the job file; the environment
    (credentials, ``CARMIGRATE_JOBS``) is this process's.

    Raises:
        PlanError: The process could not be started.
    """
    path = _path(job_id, folder)
    env = {**os.environ, JOBS_ENV: str(path.parent)}
    # a short-lived intermediate starts the runner in its own session and
    # exits, so the runner belongs to no one here and outlives this process
    done = subprocess.run(  # noqa: S603 - our own interpreter and command
        [
            sys.executable,
            "-c",
            _SPAWN,
            str(path.with_name(f"{job_id}.log")),
            sys.executable,
            "-m",
            "carmigrate",
            "job",
            "run",
            job_id,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode or not done.stdout.strip().isdigit():
        msg = f"job {job_id} could not be started: {done.stderr.strip()}"
        raise PlanError(msg)
    return int(done.stdout)


_SPAWN: Final = """
import subprocess, sys
log = open(sys.argv[1], "ab")
p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                     start_new_session=True)
print(p.pid)
"""


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own exited child) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


@attrs.frozen
class JobStatus:
    """Where a job stands.

    Attributes:
        id: The job id.
        kind: ``"osparc-import"``.
        state: ``queued``, ``running``, ``interrupted`` (its process died
            while running: run it again to resume), ``succeeded`` or
            ``failed``.
        pid: The process that ran it last.
        updated: When the job file last changed (UTC, ISO 8601).
        written: Objects written so far.
        error: The error of a failed run.
        result: What a successful run imported.
    """

    id: str
    kind: str
    state: str
    pid: int | None
    updated: str
    written: int
    error: str | None
    result: Mapping[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return attrs.asdict(self)


def job_status(job_id: str, *, folder: Path | None = None) -> JobStatus:
    """Read a job's status; reads only.

    Raises:
        PlanError: No such job.
    """
    data = _read(job_id, folder)
    state = data["state"]
    if state == "running" and not _alive(data["pid"]):
        state = "interrupted"
    return JobStatus(
        id=data["id"],
        kind=data["kind"],
        state=state,
        pid=data["pid"],
        updated=data["updated"],
        written=len(data["progress"]["written"]),
        error=data["error"],
        result=data["result"],
    )
