"""What happens when workers keep dying: one policy for every server (pyfly-hydra's supervisor and granian's).

A worker that dies is respawned at once. One that dies before it served, or again within
``CRASH_LOOP_SECONDS`` of being respawned, is failing: its slot is respawned after 1 s, then 2, 4 ... up
to ``MAX_BACKOFF_SECONDS`` while the other workers serve. When every slot is failing and none serves,
the server stops with exit code 1: the app cannot run, and a service manager or orchestrator must see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CRASH_LOOP_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 30.0


@dataclass
class CrashPolicy:
    """Counts each slot's deaths in a row and says what to do after one."""

    slots: int
    failures: dict[int, int] = field(default_factory=dict)
    respawned: set[int] = field(default_factory=set)  # slots whose worker was started after a death

    def died(self, slot: int, *, lived: float, served: bool = True, others_serving: int) -> float | None:
        """After the worker of ``slot`` died: seconds to wait before respawning it, or ``None`` to stop."""
        failed = not served or (slot in self.respawned and lived < CRASH_LOOP_SECONDS)
        self.respawned.add(slot)
        self.failures[slot] = self.failures.get(slot, 0) + 1 if failed else 0
        if not failed:
            return 0.0
        if others_serving == 0 and all(self.failures.get(s, 0) for s in range(self.slots)):
            return None
        return min(2.0 ** (self.failures[slot] - 1), MAX_BACKOFF_SECONDS)

    def failing(self, slot: int) -> bool:
        return self.failures.get(slot, 0) > 0
