"""The privacy-budget ledger: refuses what would exceed, survives a restart and a kill -9,
and a release is charged before anything is released."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pulse.profiles.ledger import RESEARCH_SCOPE, BudgetExceeded, Ledger, ledger_path
from pulse.profiles.research import research_dir


def _entry(epsilon, delta=1e-6, dataset="rd-1"):
    return {"datasetId": dataset, "epsilon": epsilon, "delta": delta, "k": 5,
            "attributes": ["plan"], "requestedBy": "analyst-user",
            "at": "2026-12-01T00:00:00+00:00"}


def test_the_release_that_would_exceed_is_refused_and_not_recorded(tmp_path):
    ledger = Ledger(tmp_path, 2.0, 1e-5)
    state = ledger.charge(RESEARCH_SCOPE, _entry(1.5))
    assert state["spent"]["epsilon"] == 1.5 and state["remaining"]["epsilon"] == 0.5
    with pytest.raises(BudgetExceeded) as refused:
        ledger.charge(RESEARCH_SCOPE, _entry(1.0, dataset="rd-2"))
    assert refused.value.field == "epsilon" and refused.value.remaining == 0.5
    assert ledger.state()["dpReleases"] == 1
    with pytest.raises(BudgetExceeded) as refused:
        ledger.charge(RESEARCH_SCOPE, _entry(0.1, delta=2e-5, dataset="rd-3"))
    assert refused.value.field == "delta"
    # What is left can still be spent, to the last bit of float rounding.
    for i in range(5):
        ledger.charge(RESEARCH_SCOPE, _entry(0.1, delta=1e-6, dataset=f"rd-x{i}"))
    assert ledger.state()["remaining"]["epsilon"] == pytest.approx(0.0, abs=1e-12)


def test_exact_releases_are_recorded_outside_the_budget(tmp_path):
    ledger = Ledger(tmp_path, 1.0, 1e-5)
    ledger.charge(RESEARCH_SCOPE, _entry(None, None))
    state = ledger.state()
    assert state["spent"] == {"epsilon": 0.0, "delta": 0.0}
    assert state["exactReleases"] == 1 and "no DP budget accounts for" in state["guarantee"]


def test_the_ledger_survives_a_restart(tmp_path):
    Ledger(tmp_path, 1.0, 1e-5).charge(RESEARCH_SCOPE, _entry(0.75))
    again = Ledger(tmp_path, 1.0, 1e-5)
    assert again.state()["spent"]["epsilon"] == 0.75
    with pytest.raises(BudgetExceeded):
        again.charge(RESEARCH_SCOPE, _entry(0.5))
    assert [s["scope"] for s in again.scopes()] == [RESEARCH_SCOPE]


CRASH = """
import os, signal, sqlite3, sys
from pulse.profiles import research
from pulse.profiles.ledger import Ledger
from pulse.profiles.store import SCHEMA

data_dir = sys.argv[1]
conn = sqlite3.connect(":memory:", isolation_level=None)
conn.executescript(SCHEMA)
ledger = Ledger(data_dir, 1.0, 1e-5)
charge = ledger.charge

def charge_then_die(scope, entry):
    charge(scope, entry)
    os.kill(os.getpid(), signal.SIGKILL)  # after the charge, before any noise or file

ledger.charge = charge_then_die
research.release(data_dir, conn, 1.8e9, 5, ("plan",), 0.25, ledger=ledger)
"""


def test_a_crash_after_the_charge_releases_nothing_unaccounted(tmp_path):
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path)], cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=120,
                          capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    recorded = json.loads(ledger_path(tmp_path).read_text())["scopes"][RESEARCH_SCOPE]
    assert [e["epsilon"] for e in recorded] == [0.25]
    assert not research_dir(tmp_path).exists() or not any(research_dir(tmp_path).iterdir())
    assert Ledger(tmp_path, 1.0, 1e-5).state()["remaining"]["epsilon"] == 0.75
