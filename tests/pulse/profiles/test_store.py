"""The profile store: pseudonymous keys, idempotent folding, streaks, retention."""

from __future__ import annotations

from datetime import timedelta

from pulse.profiles.aggregates import compute
from pulse.profiles.store import DEFAULT_FUNNELS, ProfileStore, pseudonymise
from tests.pulse.profiles.population import NOW, event
from tests.pulse.profiles.published import published

SALT = "test-salt-0123456789abcdef"


def make(tmp_path, clock=NOW.timestamp) -> ProfileStore:
    return ProfileStore(tmp_path / "p.db", SALT, clock=clock)


def samples(store, k=1) -> dict:
    return published([compute(store.conn, NOW.timestamp(), DEFAULT_FUNNELS)], k)


def test_keys_are_keyed_hashes_and_raw_ids_are_never_stored(tmp_path):
    store = make(tmp_path)
    store.apply(store.project([event("alice@example.com", NOW, "session", "start")]))
    assert pseudonymise(SALT, "a") != pseudonymise("another-salt-0123456789", "a")
    uid = store.conn.execute("SELECT uid FROM users").fetchone()[0]
    assert uid == pseudonymise(SALT, "alice@example.com") and len(uid) == 16
    store.close()
    assert b"alice" not in b"".join(p.read_bytes() for p in tmp_path.glob("p.db*"))


def test_order_and_repetition_do_not_matter(tmp_path):
    days = [NOW - timedelta(days=d) for d in (0, 1, 2, 5, 9, 40)]
    events = [event("u", t, "session", "start", platform="web") for t in days]
    forward, backward = make(tmp_path / "a"), make(tmp_path / "b")
    (tmp_path / "a").mkdir(exist_ok=True)
    for e in events:
        forward.apply(forward.project([e]))
    for e in reversed(events + events):
        backward.apply(backward.project([e]))
    cols = "first_day, last_day, days, weeks, last_web"
    assert (forward.conn.execute(f"SELECT {cols} FROM users").fetchall()
            == backward.conn.execute(f"SELECT {cols} FROM users").fetchall())
    out = samples(forward)
    assert out[("fitness_streak_users", ("2-3",))] == 1  # today, yesterday, the day before
    assert out[("fitness_segment_users", ("medium", "free", "none"))] == 1  # 5 days of 30


def test_latest_plan_wins_and_cancel_means_free(tmp_path):
    store = make(tmp_path)
    sub = {"etype": "business_event"}
    store.apply(store.project([
        event("u", NOW - timedelta(days=3), "subscription", "start", props={"plan": "annual"},
              **sub),
        event("u", NOW - timedelta(days=1), "subscription", "cancel", props={"plan": "annual"},
              **sub),
        event("v", NOW - timedelta(days=1), "subscription", "renew", props={"plan": "monthly"},
              **sub)]))
    store.apply(store.project([event("v", NOW - timedelta(days=9), "subscription", "start",
                                     props={"plan": "family"}, **sub)]))  # late, older
    out = samples(store)
    assert out[("business_subscriptions_active", ("monthly",))] == 1
    assert out[("business_subscriptions_active", ("annual",))] == 0
    assert out[("business_subscriptions_active", ("family",))] == 0


def test_retention_deletes_users_inactive_longer_than_it(tmp_path):
    store = make(tmp_path)
    store.apply(store.project([event("old", NOW - timedelta(days=800), "session", "start"),
                               event("new", NOW - timedelta(days=3), "session", "start")]))
    assert store.count() == 2
    assert store.purge(730 * 86400) == 1
    assert store.count() == 1
    assert store.conn.execute("SELECT uid FROM users").fetchone()[0] == pseudonymise(SALT, "new")


def test_future_and_malformed_timestamps_are_not_profiled(tmp_path):
    store = make(tmp_path)
    bad = event("u", NOW, "session", "start")
    bad["timestamp"] = "yesterday"
    store.apply(store.project([event("u", NOW + timedelta(days=3), "session", "start"), bad]))
    assert store.count() == 0


def test_a_coach_id_must_look_like_one(tmp_path):
    store = ProfileStore(tmp_path / "p.db", SALT, clock=NOW.timestamp,
                         pii_patterns=[r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}"])
    store.apply(store.project([
        event("a", NOW, "session", "start", props={"coachId": "coach 1; drop"}),
        event("b", NOW, "session", "start", props={"coachId": "jane@example.com"}),
        event("c", NOW, "session", "start", props={"coachId": "coach-9"})]))
    coaches = [r[0] for r in store.conn.execute("SELECT coach FROM users ORDER BY coach")]
    assert coaches == [None, None, "coach-9"]
