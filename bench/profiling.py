"""Per-user profiling: intake events/s with profiling on against off (same run), store size.

Starts two real intakes (`python -m exporters.events`, waitress, durable logs), one with
`exporters.events.profiles.enabled: true` and one with it off, and posts to each, alternately,
the same 100-event batches with `wrk` (every request has fresh event ids; every batch is one
user's, drawn from a pool of 20 000 users, as a device sends its own user's events;
`--users-per-batch` mixes more). Target:
profiling costs at most 30 % of throughput (on/off >= 0.70).

Then bulk-loads a synthetic population straight into a profile store (sessions on several
days, workouts, a funnel, a plan and a coach per user) and reports the SQLite files' size per
million users and how long one refresh of the aggregates takes at that size.

    .venv/bin/python bench/profiling.py [--seconds 8] [--rounds 2] [--users 200000]

Needs `wrk` (apt-get install -y wrk). Prints medians over the rounds and the ratios.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import (  # noqa: E402
    alternate,
    counter,
    free_port,
    median,
    script_for,
    start,
    stop,
    wrk_arguments,
)
from ingest import make_body as ingest_body  # noqa: E402

from exporters.events.examples import example_event  # noqa: E402
from pulse.launcher.supervisor import service_argv  # noqa: E402
from pulse.profiles.aggregates import compute  # noqa: E402
from pulse.profiles.store import DEFAULT_FUNNELS, ProfileStore  # noqa: E402

USER = "##USER##"
POOL = 20_000


def make_body(path: Path, users_per_batch: int = 1) -> int:
    """100 events of every mapped shape, today, of 1..100 users (placeholders for ids, user)."""
    stamp = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return ingest_body(path, USER, users_per_batch, stamp)


def script(work: Path) -> Path:
    """A wrk script whose event ids no other run uses, its users spread over POOL."""
    return script_for(work, USER, POOL)


def start_intake(work: Path, name: str, profiles: bool, env: dict) -> tuple:
    """An intake process with profiling on or off; (process, port)."""
    port = free_port()
    cfg = work / f"{name}.yml"
    cfg.write_text(
        f"data_dir: {work / name}\nlog_level: warning\n"
        "privacy: {salt: '${PULSE_PRIVACY_SALT}'}\n"
        f"exporters:\n  events:\n    listen: 127.0.0.1:{port}\n"
        f"    profiles: {{enabled: {'true' if profiles else 'false'}, refresh_interval: 30s}}\n")
    proc = start(service_argv("exporters.events", cfg),
                 f"http://127.0.0.1:{port}/-/ready", work / f"{name}.log", env)
    return proc, port


def throughput(args, work: Path) -> dict:
    """Events/s of the two intakes, alternating rounds."""
    env = dict(os.environ, PULSE_PRIVACY_SALT="bench-salt-0123456789",
               PULSE_ADMIN_TOKEN="bench-token-0123456789")
    on, on_port = start_intake(work, "on", True, env)
    off, off_port = start_intake(work, "off", False, env)
    try:
        results = alternate(args, lambda _name: script(work), {"off": off_port, "on": on_port})
        accepted = counter(f"http://127.0.0.1:{on_port}/metrics", "pulse_events_accepted_total")
        store = ProfileStore(work / "on" / "profiles" / "profiles.db", "bench-salt-0123456789")
        users = store.count()
        store.close()
    finally:
        stop(on)
        stop(off)
    return {"results": results, "accepted": accepted, "users": users}


def bulk_load(path: Path, n: int, chunk: int = 2000) -> float:
    """Load n synthetic users through project + apply; returns the seconds it took."""
    rng = random.Random(1)
    store = ProfileStore(path, "bench-salt-0123456789")
    now = datetime.now(UTC)
    started = time.perf_counter()
    steps = DEFAULT_FUNNELS["onboarding"]
    for base in range(0, n, chunk):
        events = []
        for u in range(base, min(n, base + chunk)):
            user = f"bulk-{u:08d}"
            first = now - timedelta(days=rng.randrange(0, 120))
            for d in sorted(rng.sample(range(0, 120), 6)):
                when = first + timedelta(days=d % 30)
                if when > now:
                    continue
                e = example_event("session_start", userId=user, timestamp=when.isoformat())
                e["id"] = f"{user}-s{d}"
                events.append(e)
            for action in ("start", "complete"):
                e = example_event(f"workout_{action}", userId=user, timestamp=first.isoformat())
                e["id"] = f"{user}-w{action}"
                e["properties"]["coachId"] = f"coach-{u % 200}"
                events.append(e)
            for i, step in enumerate(steps[:rng.randrange(1, len(steps) + 1)]):
                e = example_event("funnel_step", userId=user,
                                  timestamp=(first + timedelta(minutes=i)).isoformat())
                e["id"] = f"{user}-f{i}"
                e["properties"] = {"funnel": "onboarding", "step": step}
                events.append(e)
            if u % 4 == 0:
                e = example_event("subscription_start", userId=user,
                                  timestamp=first.isoformat())
                e["id"] = f"{user}-p"
                events.append(e)
        store.apply(store.project(events))
    took = time.perf_counter() - started
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return took


def main() -> None:
    """Run both measurements and print the figures."""
    parser = wrk_arguments(argparse.ArgumentParser())
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--users-per-batch", type=int, default=1, choices=range(1, 101),
                        metavar="1..100")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    work = Path(tempfile.mkdtemp(prefix="pulse-bench-profiling-"))
    try:
        size = make_body(work / "body.json", args.users_per_batch)
        run = throughput(args, work)
        db = work / "bulk" / "profiles.db"
        load_s = bulk_load(db, args.users)
        files = sum(p.stat().st_size for p in db.parent.glob("profiles.db*"))
        store = ProfileStore(db, "bench-salt-0123456789")
        started = time.perf_counter()
        compute(store.conn, time.time(), DEFAULT_FUNNELS)
        refresh_s = time.perf_counter() - started
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"body: 100 events, {size} bytes, {args.users_per_batch} user(s) per batch (pool "
          f"{POOL}); wrk 1 thread, "
          f"{args.connections} connections, {args.rounds} rounds x {args.seconds:.0f} s, medians")
    print(f"{'profiling':<10}{'batches/s':>12}{'events/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'non-2xx':>9}")
    rates = {}
    for name in ("off", "on"):
        rows = run["results"][name]
        rps = median([r["rps"] for r in rows])
        rates[name] = rps
        print(f"{name:<10}{rps:>12.0f}{rps * 100:>12.0f}{median([r['p50'] for r in rows]):>9.2f}"
              f"{median([r['p99'] for r in rows]):>9.2f}{sum(r['non2xx'] for r in rows):>9}")
    ratio = rates["on"] / rates["off"]
    print(f"profiling on / off throughput ratio: {ratio:.2f}  (target >= 0.70, i.e. profiling "
          f"costs at most 30 %: {'reached' if ratio >= 0.70 else 'NOT reached'})")
    print(f"profiled: {run['users']} users from {run['accepted']:.0f} accepted events")
    per_million = files / args.users * 1_000_000
    print(f"store: {args.users} synthetic users loaded in {load_s:.1f} s "
          f"({args.users / load_s:.0f} users/s), {files / 1e6:.1f} MB on disk "
          f"= {per_million / 1e6:.0f} MB per million users")
    print(f"one refresh of every aggregate at {args.users} users: {refresh_s:.2f} s "
          f"(~{refresh_s / args.users * 1e6:.1f} s per million users, every refresh_interval)")


if __name__ == "__main__":
    main()
