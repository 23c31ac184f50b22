"""The stage loop's scheduler: which item is offered next, and which wait.

The coordinator runs a stage in turns: each turn it fills free workers with
items (small objects in groups), then waits for results. The scheduler owns
everything about *which* record comes next and what is set aside:

- ``ready``: records to offer first (restored from a cold tier, or held back
  by their tenant until now);
- ``held``: the one record the global rate made wait (offered again, first,
  once the tokens are there);
- the ledger cursor over the stage's runnable items, in plan order, and
  ``lookahead``: one record taken from it that did not fit this turn;
- ``warming`` (due time of the next look at each cold item) and
  ``restoring`` (restores in flight), bounded by the restore batch; cold
  items beyond the batch are deferred and the cursor is read again for them
  once it is exhausted;
- ``paced``: records held back by their tenant's rate, by due time, and how
  long each tenant was held back.
"""

from __future__ import annotations

import collections
import heapq
from typing import TYPE_CHECKING, Final

from carmigrate.migrate._model import ItemState

if TYPE_CHECKING:
    from collections.abc import Iterator

    from carmigrate.migrate._ledger import ItemRecord, Ledger

__all__ = ["Scheduler"]

_S = ItemState
RUNNABLE: Final = (_S.PENDING, _S.COPYING, _S.WARMING, _S.COPIED, _S.FAILED)


class Scheduler:
    """Which record the stage loop offers next, and the records set aside.

    State: the queues described in the module docs, for the stage being run
    (``ready``, ``warming``, ``restoring``, ``paced`` and the tenant waits
    carry over from stage to stage; the cursor does not).
    """

    def __init__(self, ledger: Ledger, restore_batch: int) -> None:
        self.ledger = ledger
        self.restore_batch = restore_batch
        self.ready: collections.deque[ItemRecord] = collections.deque()
        self.warming: dict[int, tuple[float, ItemRecord]] = {}
        self.restoring: set[int] = set()
        self.paced: list[tuple[float, int, ItemRecord]] = []
        self.tenant_waits: dict[str, float] = {}
        self.held: ItemRecord | None = None
        self.stage = ""
        self._source: Iterator[ItemRecord] = iter(())
        self.exhausted = True
        self.lookahead: ItemRecord | None = None
        self.deferred_cold = False

    # -- the cursor -----------------------------------------------------

    def start_stage(self, stage: str) -> None:
        """Begin offering the stage's runnable items, in plan order."""
        self.stage = stage
        self._source = self.ledger.items(stage=stage, state=RUNNABLE)
        self.exhausted = False
        self.lookahead = None
        self.deferred_cold = False
        self.held = None

    def waiting(self) -> ItemRecord | None:
        """The record to offer before any new one: the first ready, else the held one."""
        if self.ready:
            return self.ready[0]
        return self.held

    def fetch(self) -> ItemRecord | None:
        """The next record of the cursor (the lookahead first); ``None`` once exhausted."""
        ahead = self.lookahead
        if ahead is not None:
            self.lookahead = None
            return ahead
        rec = next(self._source, None)
        if rec is None:
            self.exhausted = True
        return rec

    def rescan_deferred(self) -> bool:
        """With the cursor exhausted: read it again for deferred cold items, if any."""
        if not self.deferred_cold or self.lookahead is not None:
            return False
        self.deferred_cold = False
        self.exhausted = False
        self._source = self.ledger.items(
            stage=self.stage, state=(_S.PENDING, _S.WARMING)
        )
        return True

    def started(self, rec: ItemRecord) -> None:
        """``rec`` was handed to a worker: it leaves ``ready`` or ``held``."""
        if self.ready and self.ready[0] is rec:
            self.ready.popleft()
        if self.held is rec:
            self.held = None

    def hold(self, rec: ItemRecord) -> None:
        """The global rate makes ``rec`` wait: offer it first next turn."""
        if rec is not self.held and not (self.ready and self.ready[0] is rec):
            self.held = rec

    # -- cold items -----------------------------------------------------

    def restore_room(self) -> bool:
        """Whether another cold item may start its restore (the batch has room)."""
        return len(self.warming) + len(self.restoring) < self.restore_batch

    def due_restore(self, now: float) -> ItemRecord | None:
        """A cold item whose next look is due, taken out of ``warming``."""
        for seq, (due, rec) in self.warming.items():
            if due <= now:
                del self.warming[seq]
                self.restoring.add(seq)
                return rec
        return None

    def first_warming_due(self) -> float | None:
        """When the next look at a cold item is due, if any waits."""
        return min((d for d, _ in self.warming.values()), default=None)

    # -- tenants --------------------------------------------------------

    def hold_back(self, rec: ItemRecord, wait: float, now: float) -> None:
        """Set ``rec`` aside until its tenant's tokens are due; other tenants go on."""
        if self.ready and self.ready[0] is rec:
            self.ready.popleft()
        heapq.heappush(self.paced, (now + wait, rec.seq, rec))
        tenant = rec.item.cohort
        self.tenant_waits[tenant] = self.tenant_waits.get(tenant, 0.0) + wait

    def release_paced(self, now: float) -> None:
        """Records whose tenant's tokens are due go to ``ready``."""
        while self.paced and self.paced[0][0] <= now:
            self.ready.append(heapq.heappop(self.paced)[2])

    def first_paced_due(self) -> float | None:
        """When the next record held back by its tenant is due, if any."""
        return self.paced[0][0] if self.paced else None
