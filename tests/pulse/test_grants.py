"""The grant file behind every TokenStore: shared between stores, re-read on change, failing
closed when broken."""

from __future__ import annotations

from pulse.access import TokenStore
from pulse.grants import GrantFile, grants_path

NOW = 1_780_000_000.0


def test_a_grant_written_by_one_store_is_seen_and_revoked_in_another(tmp_path):
    path = grants_path(tmp_path)
    bridge, intake = TokenStore([], path), TokenStore([], path)  # two processes' stores
    assert intake.authenticate("pg_nothing", NOW) is None  # no file yet
    grant, token = bridge.grants.issue(role="engineer", subject="ann", issued_at=NOW,
                                       expires_at=NOW + 60, issued_by="admin",
                                       tenants=frozenset({"t1"}))
    seen = intake.authenticate(token, NOW + 1)
    assert (seen.name, seen.role, seen.grant_id, seen.tenants) == (
        "ann", "engineer", grant.id, frozenset({"t1"}))
    assert intake.authenticate(token, NOW + 60) is None  # expired
    assert bridge.grants.revoke(grant.id, at=NOW + 2, by="admin").revoked_at == NOW + 2
    assert intake.authenticate(token, NOW + 3) is None
    assert GrantFile(path).revoke("g-unknown", at=NOW, by="admin") is None


def test_a_broken_file_refuses_every_grant_and_raises_nothing(tmp_path):
    store = TokenStore([{"name": "a", "role": "admin", "token": "a" * 20}], grants_path(tmp_path))
    _, token = store.grants.issue(role="admin", subject="b", issued_at=NOW,
                                  expires_at=NOW + 60, issued_by="a")
    assert store.authenticate(token, NOW) is not None
    for broken in ("{not json", "[]", '{"grants": [{"id": "x"}]}'):
        store.grants.path.write_text(broken)
        assert store.authenticate(token, NOW) is None
        assert store.authenticate("a" * 20, NOW).name == "a"  # pulse.yml tokens still work


def test_ended_grants_are_dropped_a_week_after_they_end(tmp_path):
    grants = GrantFile(grants_path(tmp_path))
    old, _ = grants.issue(role="auditor", subject="a", issued_at=NOW, expires_at=NOW + 60,
                          issued_by="x")
    grants.issue(role="auditor", subject="b", issued_at=NOW + 6 * 86400, expires_at=NOW + 7 * 86400,
                 issued_by="x")
    assert len(grants.grants()) == 2
    grants.issue(role="auditor", subject="c", issued_at=NOW + 8 * 86400,
                 expires_at=NOW + 9 * 86400, issued_by="x")
    assert [g.subject for g in grants.grants()] == ["b", "c"]
