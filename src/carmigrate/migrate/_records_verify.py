"""Verify committed record stages against the destination, independently of the run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from carmigrate.errors import RecordsError
from carmigrate.migrate._records import (
    _PLAN_META,
    _dec_key,
    _Destination,
    _drift,
    _payloads,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

    from carmigrate.migrate._ledger import Ledger

__all__ = ["RecordVerifyResult", "verify_records"]


@attrs.frozen(kw_only=True)
class RecordVerifyResult:
    """What [verify_records][carmigrate.migrate.verify_records] found.

    Attributes:
        stages: The committed stages it checked, in plan order.
        checked: Rows compared (inserted and trigger rows of those stages).
        mismatches: Each row that is missing or whose digest differs from
            its checkpoint, as ``"<table> <key>: <what>"``.
        disagreements: Stages whose state in the ledger differs from the
            destination's record of committed stages (the destination is
            right; the next ``execute_records`` or ``rollback_records``
            repairs the ledger).
    """

    stages: tuple[str, ...]
    checked: int
    mismatches: tuple[str, ...] = ()
    disagreements: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Every checked row is as its stage left it, and ledger and destination agree."""
        return not self.mismatches and not self.disagreements


def verify_records(ledger: Ledger, destination: str | sa.URL) -> RecordVerifyResult:
    """Re-read every row the committed record stages wrote and compare it with their checkpoints.

    The destination's record of committed stages (its marker table) says
    which stages to check; each inserted row, and each row a destination
    trigger made for the stage, is read again and its digest compared with
    the one its checkpoint recorded at commit. Reads only: neither the
    destination nor the ledger is written. A row changed since (by anyone)
    is a mismatch, as is a missing one.

    Args:
        ledger: The ledger of the record plan.
        destination: The destination database's URL.

    Returns:
        The stages checked, the rows compared, and what differs.

    Raises:
        RecordsError: The ledger records no record plan, or the database
            failed.
    """
    plan_id = ledger._meta(_PLAN_META)
    if plan_id is None:
        msg = f"ledger {ledger.path!r} records no record plan"
        raise RecordsError(msg)
    dst = _Destination(destination)
    try:
        markers = dst.markers(plan_id)
        recorded = _payloads(ledger)
        disagreements = sorted(
            name
            for name in set(markers) | set(recorded)
            if (name in markers) != (recorded.get(name, {}).get("state") == "committed")
        )
        stages = sorted(markers.values(), key=lambda p: int(p["position"]))
        checked = 0
        mismatches: list[str] = []
        with dst.engine.connect() as conn:
            for payload in stages:
                for group in ("inserted", "trigger_rows"):
                    rows = {
                        table: [(_dec_key(k), d) for k, d in pairs]
                        for table, pairs in payload.get(group, {}).items()
                    }
                    checked += sum(len(pairs) for pairs in rows.values())
                    mismatches += [
                        f"{table} {key!r}: missing"
                        if row is None
                        else f"{table} {key!r}: changed since stage "
                        f"{payload['stage']!r} committed"
                        for table, key, row in _drift(
                            conn, dst, rows, payload.get("text_columns")
                        )
                    ]
        return RecordVerifyResult(
            stages=tuple(p["stage"] for p in stages),
            checked=checked,
            mismatches=tuple(mismatches),
            disagreements=tuple(disagreements),
        )
    finally:
        dst.close()
