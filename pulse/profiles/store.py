"""The per-user profile store: one SQLite file (WAL mode) of pseudonymous user records.

A record is keyed by the first 16 bytes of HMAC-SHA256(privacy.salt, userId) and holds only
what the aggregates need: first and last active day, a bitmap of the last 62 active days and
of the first 62 weeks since the first one, the last active day per platform, plan, goal
category and progress, coach id, and five counters (workouts started/completed, goals
achieved, AI recommendations shown/accepted). Funnel steps reached (first time) are in
`funnel`. Counters are protected by `seen` (ids of counted events, kept `dedup_window`);
everything else is idempotent (maxima, minima, bit sets, latest-by-timestamp), so a
repeated event never changes a record.

Writes happen in one transaction per group of events (`BEGIN IMMEDIATE`: read, change and
write back under the write lock, so a concurrent withdrawal from the bridge cannot be undone
by a write that read the record before it). `synchronous=NORMAL` in WAL mode: a committed
transaction survives the process being killed (it is in the WAL file); only an operating
system crash may lose the last ones.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pulse import rfc3339

DAY = 86400
BITS = 62
MASK = (1 << BITS) - 1
PLATFORM_BITS = {"ios": 1, "android": 2, "web": 4}
PLANS = ("monthly", "quarterly", "annual", "family", "lifetime")
GOALS = ("weight_loss", "muscle_gain", "endurance", "flexibility", "consistency", "nutrition",
         "sleep")
COACH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
AI_OUTCOMES = {"accepted": 1, "modified": 0, "rejected": 0, "ignored": 0}
# Activity: what a person does in the app (automatic renewals and system events are not).
ACTIVE_TYPES = ("user_action", "ai_interaction")
FUTURE_SLACK = DAY  # device clocks run ahead; beyond this an event is not profiled

# Kinds of observation (what an event changes besides activity).
NONE, W_START, W_DONE, GOAL_SET, GOAL_PROGRESS, GOAL_DONE, AI, PLAN, FUNNEL = range(9)

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
  uid BLOB PRIMARY KEY, touched INTEGER NOT NULL, first_day INTEGER, last_day INTEGER,
  days INTEGER NOT NULL, weeks INTEGER NOT NULL,
  last_ios INTEGER, last_android INTEGER, last_web INTEGER,
  plan TEXT, plan_ts REAL, goal TEXT, goal_ts REAL, progress REAL, progress_ts REAL,
  coach TEXT, coach_ts REAL, started INTEGER NOT NULL, completed INTEGER NOT NULL,
  achieved INTEGER NOT NULL, ai_shown INTEGER NOT NULL, ai_accepted INTEGER NOT NULL,
  share INTEGER, share_ts REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS funnel (
  uid BLOB NOT NULL, funnel TEXT NOT NULL, step INTEGER NOT NULL, ts REAL NOT NULL,
  PRIMARY KEY (uid, funnel, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen (eid INTEGER PRIMARY KEY, day INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS withdrawn (uid BLOB PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
"""
COLUMNS = ("uid", "touched", "first_day", "last_day", "days", "weeks", "last_ios",
           "last_android", "last_web", "plan", "plan_ts", "goal", "goal_ts", "progress",
           "progress_ts", "coach", "coach_ts", "started", "completed", "achieved", "ai_shown",
           "ai_accepted", "share", "share_ts")
(U_UID, U_TOUCHED, U_FIRST, U_LAST, U_DAYS, U_WEEKS, U_IOS, U_ANDROID, U_WEB, U_PLAN,
 U_PLAN_TS, U_GOAL, U_GOAL_TS, U_PROGRESS, U_PROGRESS_TS, U_COACH, U_COACH_TS, U_STARTED,
 U_COMPLETED, U_ACHIEVED, U_AI_SHOWN, U_AI_ACCEPTED, U_SHARE, U_SHARE_TS) = range(len(COLUMNS))
PLATFORM_COLUMN = {1: U_IOS, 2: U_ANDROID, 4: U_WEB}
INSERT_USER = (f"INSERT OR REPLACE INTO users ({', '.join(COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(COLUMNS))})")
SELECT_USERS = f"SELECT {', '.join(COLUMNS)} FROM users WHERE uid IN ({{}})"
IN_CHUNK = 500  # bound parameters per IN (...) query
DEFAULT_FUNNELS = {
    "onboarding": ("app_open", "sign_up", "profile", "goals", "first_workout"),
    "subscription": ("paywall_view", "plan_select", "checkout", "subscribed"),
}


def pseudonymise(salt: str, user_id: str) -> bytes:
    """The profile key of a user id: HMAC-SHA256 keyed with the privacy salt, 16 bytes."""
    return hmac.new(salt.encode(), user_id.encode("utf-8", "surrogatepass"),
                    hashlib.sha256).digest()[:16]


def db_path(data_dir: str | Path) -> Path:
    """Where the profile database of a data directory lives."""
    return Path(data_dir) / "profiles" / "profiles.db"


def week_of(day: int) -> int:
    """Monday-based week number of an epoch day (day 0, 1970-01-01, was a Thursday)."""
    return (day + 3) // 7


def event_key(event_id: str) -> int:
    """A 63-bit key of an event id (what `seen` keeps)."""
    digest = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def parse_time(text: str) -> float | None:
    """Epoch seconds of an RFC 3339 date-time (lower-case t/z and leap seconds too: the
    schema accepts them), None if invalid."""
    stamp = rfc3339.parse_time(text)
    return None if stamp is None else stamp.timestamp()


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, secure delete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None,
                           check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    # Deleted records are overwritten with zeros, not left in free pages (withdrawal).
    conn.execute("PRAGMA secure_delete=ON")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    return conn


class ProfileStore:
    """Pseudonymous per-user records in SQLite; `apply` folds projected events into them."""

    def __init__(self, path: Path, salt: str, *, funnels: dict | None = None,
                 pii_patterns: Iterable[str] = (), dedup_window_seconds: float = 7 * DAY,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.salt = salt
        self.clock = clock
        self.dedup_window = dedup_window_seconds
        self.funnels = {name: tuple(steps)
                        for name, steps in (funnels or DEFAULT_FUNNELS).items()}
        self._steps = {(name, step): i for name, steps in self.funnels.items()
                       for i, step in enumerate(steps)}
        self._pii = [re.compile(p) for p in pii_patterns]
        self.conn = connect(self.path)
        # Keys are random hashes: a bigger page cache keeps inserts of new users in memory
        # (about 1.5x the events/s when every event is a new user; at most 32 MB).
        self.conn.execute("PRAGMA cache_size=-32768")
        # Checkpoint every ~40 MB of WAL rather than 4 MB: hot pages are copied far less
        # often (about 1.5x the events/s of new users); a withdrawal truncates it anyway.
        self.conn.execute("PRAGMA wal_autocheckpoint=10000")
        self.conn.executescript(SCHEMA)

    # ---- projection (no I/O) -----------------------------------------------------------------

    def project(self, events: list[dict]) -> list[tuple]:
        """What each profiled event changes, as tuples; events without userId are skipped.

        (uid, event key or 0, timestamp, day, platform bit, active, kind, a, b, coach,
        consentDate, canShare)
        """
        out = []
        now = self.clock()
        horizon = now + FUTURE_SLACK
        steps = self._steps
        # A batch usually comes from one user: hash once (raw ids are never kept beyond it).
        last_user, uid = None, b""
        for event in events:
            user_id = event.get("userId")
            if not user_id:
                continue
            if user_id != last_user:
                last_user, uid = user_id, pseudonymise(self.salt, user_id)
            ts = parse_time(event["timestamp"])
            if ts is None or ts > horizon or ts < 0:
                continue
            props = event.get("properties") or {}
            etype, category, action = event["eventType"], event["category"], event["action"]
            kind, a, b, counted = NONE, None, None, False
            if category == "workout" and etype == "user_action":
                if action == "start":
                    kind, counted = W_START, True
                elif action == "complete":
                    kind, counted = W_DONE, True
            elif category == "goal":
                goal = props.get("goalCategory")
                goal = goal if goal in GOALS else None
                if action == "set":
                    kind, a = GOAL_SET, goal
                elif action == "progress":
                    value = event.get("value")
                    if isinstance(value, int | float) and 0 <= value <= 1:
                        kind, a, b = GOAL_PROGRESS, goal, float(value)
                elif action == "achieve":
                    kind, a, counted = GOAL_DONE, goal, True
            elif category == "recommendation" and etype == "ai_interaction":
                accepted = AI_OUTCOMES.get(action)
                if accepted is not None:
                    kind, a, counted = AI, accepted, True
            elif category == "subscription" and etype == "business_event":
                plan = props.get("plan")
                if action in ("start", "renew") and plan in PLANS:
                    kind, a = PLAN, plan
                elif action == "cancel":
                    kind, a = PLAN, "free"
            elif category == "funnel" and action == "step":
                index = steps.get((props.get("funnel"), props.get("step")))
                if index is not None:
                    kind, a, b = FUNNEL, props["funnel"], index
            coach = props.get("coachId")
            if coach is not None and not (isinstance(coach, str) and COACH_ID.match(coach)
                                          and not any(p.search(coach) for p in self._pii)):
                coach = None
            flags = event["privacyFlags"]
            out.append((uid, event_key(event["id"]) if counted else 0, ts,
                        int(ts // DAY), PLATFORM_BITS.get(event["deviceInfo"]["platform"], 0),
                        etype in ACTIVE_TYPES, kind, a, b, coach, flags.get("consentDate"),
                        flags.get("canShare") is True))
        return out

    # ---- writing -----------------------------------------------------------------------------

    def apply(self, observations: list[tuple]) -> int:
        """Fold projected events into the records in one transaction; returns users changed.

        A handful of statements per call, whatever the number of users: records, tombstones
        and counted event ids are read with `IN (...)` and written with executemany.
        """
        if not observations:
            return 0
        by_user: dict[bytes, list[tuple]] = {}
        for obs in observations:
            by_user.setdefault(obs[0], []).append(obs)
        uids = list(by_user)
        eids = list({obs[1] for obs in observations if obs[1]})
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            tombs = dict(_select_in(cur, "SELECT uid, at FROM withdrawn WHERE uid IN ({})",
                                    uids))
            records = {row[0]: list(row) for row in _select_in(
                cur, SELECT_USERS, uids)}
            seen = {row[0] for row in _select_in(cur, "SELECT eid FROM seen WHERE eid IN ({})",
                                                 eids)}
            written, funnel_rows, new_seen, reconsented = [], [], [], []
            for uid, items in by_user.items():
                if uid in tombs:
                    items = self._reconsented(items, tombs[uid])
                    if not items:
                        continue
                    reconsented.append((uid,))
                rec = records.get(uid) or _new_record(uid)
                funnel_rows += _fold(rec, items, seen, new_seen)
                written.append(rec)
            if reconsented:
                cur.executemany("DELETE FROM withdrawn WHERE uid = ?", reconsented)
            cur.executemany(INSERT_USER, written)
            if new_seen:
                cur.executemany("INSERT OR IGNORE INTO seen (eid, day) VALUES (?, ?)", new_seen)
            if funnel_rows:
                cur.executemany(
                    "INSERT INTO funnel (uid, funnel, step, ts) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (uid, funnel, step) DO UPDATE SET ts = MIN(ts, excluded.ts)",
                    funnel_rows)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return len(written)

    @staticmethod
    def _reconsented(items: list[tuple], withdrawn_at: float) -> list[tuple]:
        """Events of a withdrawn user count again only under a consent given after withdrawal."""
        kept = []
        for obs in items:
            consent = parse_time(obs[10]) if obs[10] else None
            if consent is not None and consent > withdrawn_at:
                kept.append(obs)
        return kept

    def withdraw(self, user_id: str) -> bool:
        """Delete a user's record and funnel steps; remember the withdrawal (key and time only).

        Returns True when a record existed. Later events of the user are profiled again only
        if they carry canProfile true with a consentDate after the withdrawal.
        """
        uid = pseudonymise(self.salt, user_id)
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            existed = cur.execute("DELETE FROM users WHERE uid = ?", (uid,)).rowcount > 0
            existed = cur.execute("DELETE FROM funnel WHERE uid = ?",
                                  (uid,)).rowcount > 0 or existed
            cur.execute("INSERT OR REPLACE INTO withdrawn (uid, at) VALUES (?, ?)",
                        (uid, self.clock()))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self.checkpoint()
        return existed

    def checkpoint(self) -> None:
        """Fold the WAL into the database and truncate it (old page images go with it)."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError:
            pass  # busy: the next checkpoint folds it

    def purge(self, retention_seconds: float) -> int:
        """Delete users untouched for longer than the retention, old event keys, old tombstones."""
        now = self.clock()
        oldest = int((now - retention_seconds) // DAY)
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            uids = [r[0] for r in cur.execute("SELECT uid FROM users WHERE touched < ?",
                                              (oldest,))]
            for uid in uids:
                cur.execute("DELETE FROM users WHERE uid = ?", (uid,))
                cur.execute("DELETE FROM funnel WHERE uid = ?", (uid,))
            cur.execute("DELETE FROM seen WHERE day < ?", (int((now - self.dedup_window) // DAY),))
            cur.execute("DELETE FROM withdrawn WHERE at < ?", (now - retention_seconds,))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        if uids:
            self.checkpoint()
        return len(uids)

    def count(self) -> int:
        """How many user records exist."""
        return self.conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _new_record(uid: bytes) -> list:
    rec: list = [None] * len(COLUMNS)
    rec[U_UID] = uid
    rec[U_DAYS] = rec[U_WEEKS] = 0
    rec[U_STARTED] = rec[U_COMPLETED] = rec[U_ACHIEVED] = rec[U_AI_SHOWN] = 0
    rec[U_AI_ACCEPTED] = 0
    return rec


def _select_in(cur: sqlite3.Cursor, sql: str, keys: list) -> list[tuple]:
    """Rows of `sql` (with one `IN ({})`) for every key, in chunks of IN_CHUNK."""
    rows: list[tuple] = []
    for i in range(0, len(keys), IN_CHUNK):
        part = keys[i:i + IN_CHUNK]
        rows += cur.execute(sql.format(", ".join("?" * len(part))), part).fetchall()
    return rows


def _fold(rec: list, items: list[tuple], seen: set, new_seen: list) -> list[tuple]:
    """Apply one user's observations to its record (a list, changed in place).

    seen: ids of events already counted (new ones are added, and appended to new_seen).
    """
    funnel_rows = []
    uid = rec[U_UID]
    for (_, eid, ts, day, pbit, active, kind, a, b, coach, _consent, share) in items:
        if rec[U_TOUCHED] is None or day > rec[U_TOUCHED]:
            rec[U_TOUCHED] = day
        if rec[U_SHARE_TS] is None or ts >= rec[U_SHARE_TS]:
            rec[U_SHARE], rec[U_SHARE_TS] = int(share), ts
        if active:
            _mark_day(rec, day)
            col = PLATFORM_COLUMN.get(pbit)
            if col is not None and (rec[col] is None or day > rec[col]):
                rec[col] = day
        if coach is not None and (rec[U_COACH_TS] is None or ts >= rec[U_COACH_TS]):
            rec[U_COACH], rec[U_COACH_TS] = coach, ts
        if kind == NONE:
            continue
        if eid:
            if eid in seen:
                eid = -1  # counted before: only the idempotent parts apply
            else:
                seen.add(eid)
                new_seen.append((eid, day))
        if kind == W_START:
            if eid != -1:
                rec[U_STARTED] += 1
        elif kind == W_DONE:
            if eid != -1:
                rec[U_COMPLETED] += 1
        elif kind in (GOAL_SET, GOAL_PROGRESS, GOAL_DONE):
            if a is not None and (rec[U_GOAL_TS] is None or ts >= rec[U_GOAL_TS]):
                rec[U_GOAL], rec[U_GOAL_TS] = a, ts
            progress = {GOAL_SET: 0.0, GOAL_PROGRESS: b, GOAL_DONE: 1.0}[kind]
            if rec[U_PROGRESS_TS] is None or ts >= rec[U_PROGRESS_TS]:
                rec[U_PROGRESS], rec[U_PROGRESS_TS] = progress, ts
            if kind == GOAL_DONE and eid != -1:
                rec[U_ACHIEVED] += 1
        elif kind == AI:
            if eid != -1:
                rec[U_AI_SHOWN] += 1
                rec[U_AI_ACCEPTED] += a
        elif kind == PLAN:
            if rec[U_PLAN_TS] is None or ts >= rec[U_PLAN_TS]:
                rec[U_PLAN], rec[U_PLAN_TS] = a, ts
        elif kind == FUNNEL:
            funnel_rows.append((uid, a, b, ts))
    return funnel_rows


def _mark_day(rec: list, day: int) -> None:
    """Set a day in the 62-day bitmap (anchored at last_day) and its week in the week bitmap."""
    last = rec[U_LAST]
    if last is None:
        rec[U_FIRST] = rec[U_LAST] = day
        rec[U_DAYS] = rec[U_WEEKS] = 1
        return
    if day > last:
        shift = day - last
        rec[U_DAYS] = ((rec[U_DAYS] << shift) | 1) & MASK if shift < BITS else 1
        rec[U_LAST] = day
    elif last - day < BITS:
        rec[U_DAYS] |= 1 << (last - day)
    first = rec[U_FIRST]
    if day < first:
        moved = week_of(first) - week_of(day)
        rec[U_WEEKS] = (rec[U_WEEKS] << moved) & MASK if moved < BITS else 0
        rec[U_FIRST] = first = day
    offset = week_of(day) - week_of(first)
    if offset < BITS:
        rec[U_WEEKS] |= 1 << offset
