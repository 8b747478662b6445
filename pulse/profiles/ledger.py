"""The privacy-budget ledger: what every differentially private release of a scope has spent.

A scope is one population that releases describe: `research` is every research dataset of
this deployment's profile store, whatever its attribute set, because two releases of the
same users compose sequentially (their epsilons and deltas add up) even when they group
them differently. Each scope has the configured total (`privacy.budget.epsilon`, `.delta`);
a release that would take the scope past either is refused before anything is computed.

The ledger is one JSON file, `<data_dir>/privacy/budget.json`, replaced atomically (and the
rename fsynced) under an fcntl lock, so concurrent bridge workers see each other's spending
and a kill -9 leaves the old or the new ledger. A release is charged before its noise is
drawn: a crash between the two wastes budget, it never releases anything unaccounted.
Exact (k-anonymous, not DP) releases are recorded too, with epsilon null: they are outside
what a DP budget can account for, and the ledger says how many there were.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

from pulse.fileio import file_lock, write_atomic

RESEARCH_SCOPE = "research"
# Float sums of configured figures (ten releases of 0.1 against 1.0) must not be refused
# for the last bit of rounding.
_ROUNDING = 1e-9


class BudgetExceeded(Exception):
    """A release that would take a scope past its total; names the field and what is left."""

    def __init__(self, field: str, asked: float, remaining: float, total: float, scope: str):
        super().__init__(f"{field} {asked:g} exceeds the remaining privacy budget "
                         f"{remaining:g} of scope {scope!r} (total {total:g})")
        self.field, self.asked, self.remaining, self.total, self.scope = \
            field, asked, remaining, total, scope


def ledger_path(data_dir: str | Path) -> Path:
    """Where the ledger of a data directory is kept."""
    return Path(data_dir) / "privacy" / "budget.json"


_THREAD_LOCK = threading.Lock()  # flock is per open file; threads of one process queue here


class Ledger:
    """Spending per scope against the configured total (epsilon, delta)."""

    def __init__(self, data_dir: str | Path, epsilon: float, delta: float):
        self.path = ledger_path(data_dir)
        self.total = {"epsilon": float(epsilon), "delta": float(delta)}

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"scopes": {}}

    def _summary(self, scope: str, entries: list[dict]) -> dict:
        dp = [e for e in entries if e.get("epsilon") is not None]
        spent = {"epsilon": math.fsum(e["epsilon"] for e in dp),
                 "delta": math.fsum(e["delta"] for e in dp)}
        return {
            "scope": scope,
            "total": dict(self.total),
            "spent": spent,
            "remaining": {f: max(0.0, self.total[f] - spent[f]) for f in spent},
            "dpReleases": len(dp),
            "exactReleases": len(entries) - len(dp),
            "guarantee": (f"the scope's DP releases together are ({spent['epsilon']:g}, "
                          f"{spent['delta']:.3g})-differentially private (sequential "
                          "composition)" + (
                              "; exact k-anonymous releases of the same users were also made, "
                              "which no DP budget accounts for" if len(entries) > len(dp)
                              else "")),
            "releases": entries,
        }

    def state(self, scope: str = RESEARCH_SCOPE) -> dict:
        """The totals, spending, remaining budget and releases of a scope."""
        return self._summary(scope, self._read()["scopes"].get(scope, []))

    def scopes(self) -> list[dict]:
        """The state of every scope that has a release (the research scope always)."""
        known = self._read()["scopes"]
        return [self._summary(s, known.get(s, [])) for s in sorted({RESEARCH_SCOPE, *known})]

    def charge(self, scope: str, entry: dict) -> dict:
        """Record a release (entry with epsilon and delta, None for an exact one) durably,
        or raise BudgetExceeded without recording; returns the scope's new state."""
        with _THREAD_LOCK, file_lock(self.path.with_name(".budget.lock")):
            ledger = self._read()
            entries = ledger["scopes"].setdefault(scope, [])
            if entry.get("epsilon") is not None:
                state = self._summary(scope, entries)
                for field in ("epsilon", "delta"):
                    left = state["remaining"][field]
                    if entry[field] > left + _ROUNDING * self.total[field]:
                        raise BudgetExceeded(field, entry[field], left, self.total[field],
                                             scope)
            entries.append(entry)
            write_atomic(self.path, json.dumps(ledger, indent=1, sort_keys=True) + "\n",
                         sync_dir=True)
            return self._summary(scope, entries)
