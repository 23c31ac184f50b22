"""``carmigrate job``: follow and resume the jobs recipes start detached (oSPARC imports).

Jobs live in the jobs folder (``$CARMIGRATE_JOBS``, else
``$XDG_STATE_HOME/carmigrate/jobs``). Exit codes: 0 success (``status``:
the job is known; ``run``: it succeeded or was started), 1 ``run`` failed
(the job failed, or cannot run: unknown, running elsewhere, succeeded
already), 2 usage errors and, for ``status``, unknown jobs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from carmigrate.cli._output import fail
from carmigrate.errors import CarmigrateError

if TYPE_CHECKING:
    import argparse

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    """Add the ``job`` command group to the top-level parser."""
    job = subparsers.add_parser(
        "job",
        help="follow and resume detached jobs (oSPARC imports)",
        description="Follow and resume the jobs recipes start with --detach.",
    )
    sub = job.add_subparsers(dest="job_command", metavar="COMMAND", required=True)
    p = sub.add_parser(
        "status",
        help="where a job stands: queued, running, interrupted, succeeded or failed",
    )
    p.add_argument("id", metavar="ID", help="the job id")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_status)
    p = sub.add_parser(
        "run",
        help="run a queued job, or resume an interrupted or failed one",
        description="Run a job in this process (or, with --detach, in a new one): "
        "a job whose process was killed resumes where it stopped.",
    )
    p.add_argument("id", metavar="ID", help="the job id")
    p.add_argument(
        "--detach",
        action="store_true",
        help="run it in a new process and return at once",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run)


def _status(args: argparse.Namespace) -> int:
    from carmigrate.recipes import job_status

    try:
        status = job_status(args.id)
    except CarmigrateError as e:
        return fail(args, str(e), kind=type(e).__name__)
    if args.json:
        print(json.dumps(status.to_dict(), sort_keys=True))
    else:
        print(f"{status.id}: {status.state} ({status.written} objects written)")
        if status.error:
            print(f"  error: {status.error}")
        if status.result:
            print(f"  result: {json.dumps(dict(status.result), sort_keys=True)}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from carmigrate.recipes import job_status, run_osparc_import_job, start_detached

    try:
        if args.detach:
            job_status(args.id)  # exists
            pid = start_detached(args.id)
            out = {"job": args.id, "pid": pid}
            print(json.dumps(out) if args.json else f"{args.id}: started (pid {pid})")
            return 0
        done = run_osparc_import_job(args.id)
    except CarmigrateError as e:
        return fail(args, str(e), kind=type(e).__name__, code=1)
    except (OSError, ValueError) as e:
        return fail(args, str(e), kind=type(e).__name__)
    result = {"job": args.id, "project": done.project, "new_project": done.new_project}
    print(
        json.dumps(result) if args.json else f"{args.id}: succeeded, {done.new_project}"
    )
    return 0
