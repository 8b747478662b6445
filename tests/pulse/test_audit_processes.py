"""The one audit chain written by several processes at once: every record chained, none lost;
`pulse audit verify` passes, then finds a tampered record."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from pulse.audit import AuditLog, audit_log_path, verify
from pulse.launcher.cli import main
from tests import harness

# Each writer appends its records as fast as it can once told to go, so the two interleave.
WRITER = """
import os, sys, time
from pulse.audit import AuditLog, request_record
log = AuditLog(sys.argv[1])
while not os.path.exists(sys.argv[4]):  # both start together, once both are ready
    time.sleep(0.001)
for i in range(int(sys.argv[3])):
    log.append(request_record(sys.argv[2], who=f"{sys.argv[2]}-{i}", role="admin",
                              method="GET", route="/x", path="/x", status=200))
"""


def test_two_processes_appending_at_once_make_one_intact_chain(tmp_path, capsys):
    path = audit_log_path(tmp_path)
    AuditLog(path).append({"who": "before"})
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, "1000", str(go)],
                                cwd=harness.ROOT)
               for name in ("bridge", "exporters.events")]
    time.sleep(1)  # not a timing assertion: lets both import before the start
    go.touch()
    assert [w.wait(120) for w in writers] == [0, 0]
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 2001
    by_process = {}
    for r in records[1:]:
        by_process.setdefault(r["process"], []).append(r["who"])
    # Nothing lost or duplicated, each writer's records in its own order.
    assert by_process == {p: [f"{p}-{i}" for i in range(1000)]
                          for p in ("bridge", "exporters.events")}
    # They did run at the same time: the file switches writer more than once.
    switches = sum(a["process"] != b["process"] for a, b in zip(records[1:], records[2:],
                                                                 strict=False))
    assert switches > 1
    assert verify(path) == (2001, None)
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 0
    assert "2001 record(s), chain intact" in capsys.readouterr().out

    lines = path.read_text().splitlines(keepends=True)
    entry = json.loads(lines[400])
    entry["outcome"] = "refused"
    lines[400] = json.dumps(entry, sort_keys=True) + "\n"
    path.write_text("".join(lines))
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "audit.log:401:" in out.out + out.err and "changed" in out.out + out.err


def test_a_torn_tail_left_by_a_killed_writer_is_cut_by_the_next_one(tmp_path):
    path = audit_log_path(tmp_path)
    log = AuditLog(path)
    log.append({"who": "a"})
    with open(path, "ab") as fh:
        fh.write(b'{"who": "killed mid-wri')
    # Another process's log object (no state of its own beyond the path) goes on from "a".
    AuditLog(path).append({"who": "b"})
    log.append({"who": "c"})
    assert [e["who"] for e in log.read()] == ["c", "b", "a"]
    assert verify(path) == (3, None)
