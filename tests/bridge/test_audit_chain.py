"""The audit log's hash chain: `pulse audit verify` finds the first record tampered with."""

from __future__ import annotations

import json

import pytest

from pulse.audit import GENESIS, AuditLog, audit_log_path
from pulse.launcher.cli import main
from tests.bridge.conftest import auth


@pytest.fixture
def audited(app, tmp_path):
    """A bridge data dir whose audit log holds six requests' records, and its path."""
    client = app.test_client()
    for role in ("admin", "engineer", "analyst", "executive", "coach"):
        client.get("/api/analytics/alerts/rules", headers=auth(role))
    client.get("/api/analytics/alerts/rules")  # refused, audited too
    path = app.extensions["pulse.audit"].path
    data_dir = tmp_path / "data"
    assert path == audit_log_path(data_dir)
    return data_dir, path


def _verify(capsys, data_dir) -> tuple[int, str]:
    rc = main(["audit", "verify", "--data-dir", str(data_dir)])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_an_untouched_log_verifies(audited, capsys):
    data_dir, path = audited
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 6 and lines[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in zip(lines, lines[1:], strict=False))
    rc, out = _verify(capsys, data_dir)
    assert rc == 0 and "6 record(s), chain intact" in out


def _edit(path, change):
    lines = path.read_text().splitlines(keepends=True)
    change(lines)
    path.write_text("".join(lines))


def _reword(lines, i, **fields):
    entry = json.loads(lines[i])
    entry.update(fields)
    lines[i] = json.dumps(entry, sort_keys=True) + "\n"


@pytest.mark.parametrize("tamper,line,problem", [
    # one field of one line edited (a refusal made to look allowed)
    (lambda ls: _reword(ls, 5, outcome="allowed", status=200), 6, "changed"),
    (lambda ls: _reword(ls, 2, who="someone-else"), 3, "changed"),
    (lambda ls: ls.pop(3), 4, "removed, reordered"),
    (lambda ls: ls.insert(1, ls.pop(2)), 2, "removed, reordered"),
    (lambda ls: ls.pop(0), 1, "removed, reordered"),
])
def test_a_tampered_log_is_found_at_the_first_broken_record(audited, capsys, tamper, line,
                                                            problem):
    data_dir, path = audited
    _edit(path, tamper)
    rc, out = _verify(capsys, data_dir)
    assert rc == 1
    assert f"audit.log:{line}:" in out and problem in out


def test_a_rehashed_edit_is_still_found_by_its_successor(audited, capsys):
    data_dir, path = audited

    def rehash(lines):
        from pulse.audit import record_hash
        entry = json.loads(lines[2])
        entry["who"] = "someone-else"
        entry["hash"] = record_hash(entry)
        lines[2] = json.dumps(entry, sort_keys=True) + "\n"
    _edit(path, rehash)
    rc, out = _verify(capsys, data_dir)
    assert rc == 1 and "audit.log:4:" in out


def test_the_chain_goes_on_across_a_restart_and_a_torn_last_line(tmp_path, capsys):
    path = audit_log_path(tmp_path)
    AuditLog(path).append({"who": "a"})
    with open(path, "a") as fh:
        fh.write('{"who": "torn mid-wri')
    log = AuditLog(path)
    log.append({"who": "b"})
    assert [e["who"] for e in log.read()] == ["b", "a"]
    rc, out = _verify(capsys, tmp_path)
    assert rc == 0 and "2 record(s)" in out


def test_no_log_is_exit_2(tmp_path, capsys):
    rc, out = _verify(capsys, tmp_path)
    assert rc == 2 and "no audit log" in out
