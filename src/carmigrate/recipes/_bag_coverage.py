"""Coverage of a bag backfill: bag versions x providers x where each stands."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

import attrs

from carmigrate.migrate import ItemState, MemberState, Verdict
from carmigrate.recipes._bag_register import BagRegister
from carmigrate.recipes._bag_replicas import member_key, unit_name
from carmigrate.recipes._recipe import work_ledger

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from carmigrate.migrate import MemberRecord
    from carmigrate.recipes._bag_register import StorageManifest
    from carmigrate.storage import Store

__all__ = ["BagCoverage", "CoverageRow", "bag_coverage"]


@attrs.frozen(kw_only=True)
class CoverageRow:
    """Where one bag version stands at one provider.

    Attributes:
        bag: ``<space>/<external identifier>/v<version>``.
        provider: The provider (``primary`` for the primary location).
        state: ``verified`` (the register has it), ``failed``, ``warming``
            (objects being restored at the primary), ``copying`` (some
            objects planned or copied, not all verified), or ``missing``
            (nothing done yet).
        reason: Why it failed, or what is left.
    """

    bag: str
    provider: str
    state: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "bag": self.bag,
            "provider": self.provider,
            "state": self.state,
            "reason": self.reason,
        }


@attrs.frozen(kw_only=True)
class BagCoverage:
    """Bag versions x providers x state (see [bag_coverage][carmigrate.recipes.bag_coverage]).

    Attributes:
        rows: One per bag version and provider, by bag then provider.
        providers: The providers, primary first.
    """

    rows: tuple[CoverageRow, ...]
    providers: tuple[str, ...]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per provider, bag versions per state."""
        out: dict[str, dict[str, int]] = {p: {} for p in self.providers}
        for r in self.rows:
            out[r.provider][r.state] = out[r.provider].get(r.state, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for ``--json``)."""
        return {
            "providers": list(self.providers),
            "counts": self.counts(),
            "rows": [r.to_dict() for r in self.rows],
        }

    def to_markdown(self) -> str:
        """A table: one line per bag version, one column per provider."""
        cells: dict[str, dict[str, str]] = {}
        for r in self.rows:
            cells.setdefault(r.bag, {})[r.provider] = r.state + (
                f" ({r.reason})" if r.reason and r.state == "failed" else ""
            )
        head = "| bag | " + " | ".join(self.providers) + " |"
        lines = [head, "|---|" + "---|" * len(self.providers)]
        for bag, row in cells.items():
            lines.append(
                f"| {bag} | "
                + " | ".join(row.get(p, "-") for p in self.providers)
                + " |"
            )
        return "\n".join(lines) + "\n"


def _replica_state(
    provider: str, m: StorageManifest, unit: Any, members: Mapping[str, MemberRecord]
) -> tuple[str, str | None]:
    if m.replica(provider) is not None:
        return "verified", None
    if unit is None or provider not in unit.unit.data.get("targets", []):
        return "missing", None
    keys = [member_key(provider, m, f.path) for f in m.all_files]
    recs = [members.get(k) for k in keys]
    bad = [
        f"{k.split('/', 1)[1]}: {r.state.value}" + (f": {r.reason}" if r.reason else "")
        for k, r in zip(keys, recs, strict=True)
        if r is not None
        and r.state in (MemberState.FAILED, MemberState.MISSING, MemberState.CONFLICT)
    ]
    mine = [x for x in unit.reasons if x.startswith(f"{provider}: ")]
    if bad or (unit.verdict is Verdict.FAILED and mine):
        return "failed", "; ".join(bad or mine)[:500]
    if any(
        r is not None and r.record is not None and r.record.state is ItemState.WARMING
        for r in recs
    ):
        return "warming", None
    if any(r is not None for r in recs):
        done = sum(1 for r in recs if r is not None and r.state is MemberState.VERIFIED)
        if done == len(keys):
            return "copying", "every file verified; the replica is not registered yet"
        return "copying", f"{done} of {len(keys)} files verified"
    return "missing", None


def bag_coverage(
    register: BagRegister | Store,
    work_dir: str | os.PathLike[str] | None = None,
    *,
    providers: Sequence[str] = (),
) -> BagCoverage:
    """Every registered bag version x every provider x where it stands.

    The register says which replicas are verified; the work ledger of a
    backfill (if given) says what is under way: objects warming at the
    primary, copies started, failures with their reasons. Read-only: it may
    run before, during and after a backfill.

    Args:
        register: The register (or its store).
        work_dir: A ``bag-backfill`` work folder (``None``, or a folder
            without a work ledger yet: the register alone).
        providers: Providers to report even where nothing was done
            (besides the primary, the ones the register and the ledger know).

    Returns:
        The coverage.

    Raises:
        PlanError: A register record is not a storage manifest.
        StorageError: The register's store failed.
    """
    reg = register if isinstance(register, BagRegister) else BagRegister(register)
    manifests = list(reg.manifests())
    units: dict[str, Any] = {}
    members: dict[str, MemberRecord] = {}
    with contextlib.ExitStack() as stack:
        if work_dir is not None and os.path.exists(os.path.join(work_dir, "ledger.db")):
            led = stack.enter_context(work_ledger(work_dir))
            units = {u.name: u for u in led.units(kind="bag")}
            members = {m.key: m for m in led.members()}
    names = list(providers)
    for m in manifests:
        names += [r.provider for r in m.replicas]
    for u in units.values():
        names += list(u.unit.data.get("targets", []))
    order = ["primary", *sorted(set(names) - {"primary"})]
    rows = []
    for m in manifests:
        rows.append(CoverageRow(bag=m.bag_id, provider="primary", state="verified"))
        for p in order[1:]:
            state, why = _replica_state(p, m, units.get(unit_name(m)), members)
            rows.append(CoverageRow(bag=m.bag_id, provider=p, state=state, reason=why))
    return BagCoverage(rows=tuple(rows), providers=tuple(order))
