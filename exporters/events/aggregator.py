"""The aggregator (`python -m exporters.events.aggregator --listen h:p`): counts the stream.

With `exporters.events.log.kind: jetstream` intakes only publish; each aggregator owns some
partitions of the stream through an expiring lease (key `p<n>` of the key-value bucket
`<stream>_leases`, created and renewed with compare-and-set on its revision) and counts them
with the same `MetricState` as the local log, plus the partition's per-user profiles. Every
`snapshot_interval` it stores each owned partition's state with the stream sequence it covers
in the object store `<stream>_snapshots`; whoever takes a partition over (a standby, or the
same process restarted) loads that snapshot and reads the stream from the next sequence, so
a crash neither loses nor doubles a count (retries are dropped by JetStream's duplicate
window and, beyond it, by the state's batch-id and event-id windows).

/metrics holds the owned partitions' series summed (no partition label): Prometheus sums
across aggregators, and distinct users are exact because a user lives in one partition. The
profile families are additive too (pulse.profiles.aggregates): the k-anonymous ratios and
counts are recording rules after that sum (rules/profiles.rules.yml). Each aggregator runs
the profile retention job on the partitions it owns.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sqlite3
import sys
import time
from pathlib import Path

import orjson
from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from exporters.events.jetstream import ATTEMPT_TIMEOUT, NatsThread, subject, wait_for_stream
from exporters.events.mapping import load_mapping
from exporters.events.state import Batch, MetricState
from exporters.scrape import ScrapeCollector
from pulse.config import Config, parse_duration
from pulse.profiles.store import SCHEMA, ProfileStore

log = logging.getLogger(__name__)
COMPONENT = "exporters.events.aggregator"


def lease_bucket(stream: str) -> str:
    """The key-value bucket of the partition leases."""
    return f"{stream}_leases"


def snapshot_bucket(stream: str) -> str:
    """The object store of the partition snapshots."""
    return f"{stream}_snapshots"


class Partition:
    """One partition's counts, dead letters and profiles, and the last sequence applied."""

    def __init__(self, n: int, metrics, section, profiles_path: Path | None, salt: str | None):
        self.n = n
        self.state = MetricState(
            metrics, batch_window_seconds=parse_duration(section.idempotency_window),
            max_batches=section.idempotency_max_batches, event_id_window=section.event_id_window,
            dead_letter_max=section.dead_letter_max)
        self.seq = 0
        self.answer = None  # publish(subject, data): how a withdrawal is answered
        self.profiles: ProfileStore | None = None
        if profiles_path is not None:
            profiles_path.parent.mkdir(parents=True, exist_ok=True)
            self.profiles = ProfileStore(
                profiles_path, salt, funnels=section.profiles.funnels.to_dict(),
                dedup_window_seconds=parse_duration(section.profiles.dedup_window))

    def apply(self, seq: int, data: bytes) -> None:
        """Fold one stream message in (a message at or below `seq` is a redelivery)."""
        if seq <= self.seq:
            return
        msg = orjson.loads(data)
        if "w" in msg:  # a consent withdrawal, in stream order with the user's events
            existed = False
            if self.profiles is not None:
                existed = self.profiles.withdraw_key(bytes.fromhex(msg["w"]), msg.get("t"))
            self.seq = seq
            if msg.get("reply") and self.answer is not None:
                self.answer(msg["reply"], b"true" if existed else b"false")
            return
        batch = Batch(
            batch_id=msg["b"], response=orjson.dumps(msg.get("r", {})),
            events=tuple((key, tuple((n, tuple(lbl), a) for n, lbl, a in obs))
                         for key, obs in msg["e"]),
            rejected=tuple((reason, count) for reason, count in msg.get("x", ())),
            dead_letters=tuple(msg.get("d", ())), received=msg.get("n", 0))
        planned = self.state.plan([batch])[0]
        if planned.record is not None:
            with self.state.lock:
                self.state.apply(planned.record, planned.outcome.body)
            if self.profiles is not None and msg.get("o"):
                self.profiles.apply([(bytes.fromhex(o[0]), *o[1:]) for o in msg["o"]])
        self.seq = seq

    def snapshot(self) -> bytes:
        """State, sequence and the profile database as one object."""
        head = {"version": 1, "seq": self.seq, "written": time.time(),
                "state": self.state.snapshot()}
        db = b""
        if self.profiles is not None:
            self.profiles.checkpoint()
            db = self.profiles.conn.serialize()
        return orjson.dumps(head) + b"\n" + db

    def restore(self, head: bytes) -> None:
        """Start from the state part of a snapshot (the database is restored as its file)."""
        snap = orjson.loads(head)
        self.state.load_snapshot(snap["state"])
        self.seq = snap["seq"]

    def close(self) -> None:
        """Close the profile database."""
        if self.profiles is not None:
            self.profiles.close()


class OwnedView:
    """What /metrics and the dead-letter endpoint read: the owned partitions together."""

    def __init__(self, owned: dict[int, Partition], defs):
        self.owned = owned
        self.defs = defs

    def read_metrics(self):
        """Every owned partition's counters and histograms, summed by series."""
        counters: dict[str, dict] = {}
        hists: dict[str, dict] = {}
        defs = {}
        for part in list(self.owned.values()):
            cs, hs = part.state.read_metrics()
            for d, series in cs:
                defs[d.name] = d
                out = counters.setdefault(d.name, {})
                for labels, value in series:
                    out[labels] = out.get(labels, 0.0) + value
            for d, series in hs:
                defs[d.name] = d
                out = hists.setdefault(d.name, {})
                for labels, cells in series:
                    have = out.get(labels)
                    out[labels] = cells if have is None else [a + b for a, b in
                                                             zip(have, cells, strict=True)]
        if not defs:  # nothing owned: the series still exist (known labels at 0)
            empty = MetricState(self.defs)
            return empty.read_metrics()
        return ([(defs[n], list(s.items())) for n, s in counters.items()],
                [(defs[n], list(s.items())) for n, s in hists.items()])

    @property
    def dead_letters(self) -> list[dict]:
        """The owned partitions' dead letters, oldest first."""
        items = [d for part in list(self.owned.values()) for d in part.state.dead_letters]
        return sorted(items, key=lambda d: d.get("receivedAt", ""))

    def rejected(self, limit: int) -> list[dict]:
        """The most recent dead letters, newest first."""
        return self.dead_letters[::-1][:limit]


class Aggregator:
    """Leases, consumers and snapshots of the partitions this process owns (module doc)."""

    def __init__(self, cfg: Config, ident: str, client: NatsThread | None = None):
        self.cfg = cfg
        section = cfg.exporters.events
        self.section = section
        self.log_cfg = section.log
        self.stream = self.log_cfg.stream
        self.partitions = self.log_cfg.partitions
        self.ident = ident
        self.ttl = parse_duration(section.aggregators.lease_ttl)
        self.snapshot_every = parse_duration(section.aggregators.snapshot_interval)
        peers = list(section.aggregators.listen)
        self.peers = max(1, len(peers))
        self.rank = peers.index(ident.split("/")[0]) if ident.split("/")[0] in peers else 0
        self.mapping = load_mapping(section.mapping or None, cfg.privacy.pii_patterns.values())
        self.salt = cfg.privacy.get("salt")
        self.profiled = bool(section.profiles.enabled and self.salt)
        safe = ident.replace(":", "_").replace("/", "_").replace(".", "_")
        self.work_dir = Path(cfg.data_dir) / "aggregators" / safe
        self.owned: dict[int, Partition] = {}
        self.view = OwnedView(self.owned, self.mapping.metrics)
        self._leases: dict[int, tuple[int, float]] = {}  # partition -> (revision, renewed at)
        self._tasks: dict[int, asyncio.Task] = {}
        self._free_since: dict[int, float] = {}
        self._stopping = False
        self.client = client or NatsThread(self.log_cfg.servers, f"aggregator {ident}")
        self._main: asyncio.Future | None = None

    # ---- life cycle -------------------------------------------------------------------------

    def start(self) -> Aggregator:
        """Connect, make sure the stream and buckets exist, then run in the background."""
        if self.client.nc is None:
            self.client.connect()
        wait_for_stream(self.client, self.log_cfg)
        self.client.run(self._buckets(), 60)
        self._main = asyncio.run_coroutine_threadsafe(self._run(), self.client.loop)
        return self

    async def _buckets(self) -> None:
        from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType

        js = self.client.js
        deadline = time.monotonic() + 60
        while True:
            try:
                try:
                    self.kv = await js.key_value(lease_bucket(self.stream))
                except Exception:  # noqa: BLE001 - absent: create it
                    self.kv = await js.create_key_value(KeyValueConfig(
                        bucket=lease_bucket(self.stream), ttl=self.ttl, history=1,
                        replicas=self.log_cfg.replicas, storage=StorageType.FILE))
                try:
                    self.objects = await js.object_store(snapshot_bucket(self.stream))
                except Exception:  # noqa: BLE001 - absent: create it
                    self.objects = await js.create_object_store(
                        snapshot_bucket(self.stream),
                        config=ObjectStoreConfig(replicas=self.log_cfg.replicas,
                                                 storage=StorageType.FILE))
                return
            except Exception as exc:  # noqa: BLE001 - two aggregators creating at once
                if time.monotonic() > deadline:
                    raise
                log.info("lease and snapshot buckets not ready: %r", exc)
                await asyncio.sleep(0.5)

    def stop(self) -> None:
        """Snapshot every owned partition, release its lease (a standby takes over at once)."""
        self._stopping = True
        try:
            self.client.run(self._release_all(), 30)
        except Exception as exc:  # noqa: BLE001 - the leases then expire by themselves
            log.warning("releasing the partitions failed: %r", exc)
        self.client.close()

    async def _release_all(self) -> None:
        if self._main is not None:
            self._main.cancel()
        tasks = list(self._tasks.values())
        for n in list(self.owned):
            try:
                await self._snapshot(n)
                await self.kv.delete(f"p{n}")
            except Exception as exc:  # noqa: BLE001 - expires by itself
                log.warning("partition %d not released cleanly: %r", n, exc)
            await self._drop(n, "shutting down")
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        # Renewals never wait behind a slow takeover (a lease must not lapse meanwhile).
        loops = [self._every(self.ttl / 4, self._renew),
                 self._every(self.ttl / 4, self._acquire),
                 self._every(self.snapshot_every, self._snapshot_all)]
        if self.profiled:
            loops.append(self._every(parse_duration(self.section.profiles.retention_interval),
                                     self._purge_all))
        await asyncio.gather(*loops)

    async def _every(self, seconds: float, step) -> None:
        while not self._stopping:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must go on
                log.exception("%s failed", step.__name__)
            await asyncio.sleep(seconds)

    async def _snapshot_all(self) -> None:
        for n in list(self.owned):
            try:
                await asyncio.wait_for(self._snapshot(n), max(30.0, self.snapshot_every))
            except Exception as exc:  # noqa: BLE001 - retried next interval
                log.warning("snapshot of partition %d failed: %r", n, exc)

    async def _purge_all(self) -> None:
        """The local profile store's retention job, on each owned partition's profiles.

        It runs on the loop that applies the partition's messages (the one writer of its
        database); the next snapshot carries the deletions.
        """
        retention = parse_duration(self.section.profiles.retention)
        removed = 0
        for part in list(self.owned.values()):
            if part.profiles is not None and self.owned.get(part.n) is part:
                removed += part.profiles.purge(retention)
        if removed:
            log.info("retention: deleted %d inactive user records", removed)

    # ---- leases -----------------------------------------------------------------------------

    async def _renew(self) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        for n, (rev, renewed) in list(self._leases.items()):
            try:
                new = await asyncio.wait_for(
                    self.kv.update(f"p{n}", self.ident.encode(), last=rev), self.ttl / 3)
                self._leases[n] = (new, time.monotonic())
            except KeyWrongLastSequenceError:
                if not await self._still_mine(n):
                    await self._drop(n, "its lease was taken over")
            except Exception as exc:  # noqa: BLE001 - no quorum, timeouts
                if time.monotonic() - renewed > 0.8 * self.ttl:
                    await self._drop(n, f"the lease could not be renewed ({exc!r})")

    async def _acquire(self) -> None:
        from nats.js.errors import KeyNotFoundError

        now = time.monotonic()
        target = math.ceil(self.partitions / self.peers)
        start = (self.rank * self.partitions) // self.peers
        for i in range(self.partitions):
            n = (start + i) % self.partitions
            if n in self._leases or self._stopping:
                continue
            try:
                await asyncio.wait_for(self.kv.get(f"p{n}"), ATTEMPT_TIMEOUT)
                self._free_since.pop(n, None)
                continue
            except KeyNotFoundError:
                pass
            except Exception:  # noqa: BLE001 - try again next round
                continue
            first_free = self._free_since.setdefault(n, now)
            # Up to a fair share at once; beyond it only what stayed free for a lease's
            # lifetime (its owner is gone and no peer took it).
            if len(self._leases) >= target and now - first_free < self.ttl:
                continue
            try:
                rev = await asyncio.wait_for(self.kv.create(f"p{n}", self.ident.encode()),
                                             ATTEMPT_TIMEOUT)
            except Exception:  # noqa: BLE001 - a peer was faster, or no quorum
                continue
            self._free_since.pop(n, None)
            self._leases[n] = (rev, time.monotonic())
            try:
                await asyncio.wait_for(self._take(n), 60)
            except Exception as exc:  # noqa: BLE001 - give it back; someone retries
                log.error("partition %d could not be taken over: %r", n, exc)
                await self._drop(n, "its snapshot or consumer failed")
                try:
                    await self.kv.delete(f"p{n}")
                except Exception:  # noqa: BLE001 - expires by itself
                    pass

    async def _still_mine(self, n: int) -> bool:
        """After a failed compare-and-set: a renewal whose answer was lost still counts."""
        try:
            entry = await asyncio.wait_for(self.kv.get(f"p{n}"), ATTEMPT_TIMEOUT)
        except Exception:  # noqa: BLE001 - gone or unreadable: not ours for sure
            return False
        if entry.value != self.ident.encode():
            return False
        self._leases[n] = (entry.revision, time.monotonic())
        return True

    async def _take(self, n: int) -> None:
        path = self.work_dir / f"p{n}" / "profiles.db" if self.profiled else None
        snap = await self._read_snapshot(f"p{n}")
        head, _, db = snap.partition(b"\n")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("", "-wal", "-shm"):  # a left-over copy is never trusted
                Path(str(path) + suffix).unlink(missing_ok=True)
            if db:
                path.write_bytes(db)
        part = Partition(n, self.mapping.metrics, self.section, path, self.salt)
        nc = self.client.nc
        part.answer = lambda reply, data: asyncio.ensure_future(nc.publish(reply, data))
        if head:
            part.restore(head)
        self.owned[n] = part
        self._tasks[n] = asyncio.ensure_future(self._consume(part))
        log.info("took partition %d over at stream sequence %d", n, part.seq)

    async def _read_snapshot(self, name: str) -> bytes:
        """An object's bytes, read chunk by chunk with plain requests (b"" when absent).

        nats-py's `ObjectStore.get` reads through an ordered push consumer that stalled for
        good here after a node was killed; a message-get per chunk retries cleanly.
        """
        import base64
        import hashlib

        from nats.js.errors import NotFoundError

        try:
            info = await asyncio.wait_for(self.objects.get_info(name), ATTEMPT_TIMEOUT)
        except NotFoundError:
            return b""
        if not info.size:
            return b""
        stream = f"OBJ_{snapshot_bucket(self.stream)}"
        chunks = f"$O.{snapshot_bucket(self.stream)}.C.{info.nuid}"
        parts, got, seq = [], 0, 0
        while got < info.size:
            msg = await asyncio.wait_for(
                self.client.js.get_msg(stream, seq=seq + 1, subject=chunks, next=True),
                ATTEMPT_TIMEOUT)
            parts.append(msg.data)
            got += len(msg.data)
            seq = msg.seq
        data = b"".join(parts)
        digest = info.digest.split("=", 1)[1]
        if hashlib.sha256(data).digest() != base64.urlsafe_b64decode(digest):
            raise ValueError(f"snapshot {name}: digest mismatch")
        return data

    async def _drop(self, n: int, why: str) -> None:
        self._leases.pop(n, None)
        part = self.owned.pop(n, None)
        task = self._tasks.pop(n, None)
        if task is not None:
            task.cancel()
        if part is not None:
            part.close()
            log.warning("dropped partition %d: %s", n, why)

    async def _snapshot(self, n: int) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        part = self.owned.get(n)
        lease = self._leases.get(n)
        if part is None or lease is None:
            return
        # Fencing: only the lease holder writes (a renewal proves it still is).
        try:
            rev = await self.kv.update(f"p{n}", self.ident.encode(), last=lease[0])
        except KeyWrongLastSequenceError:
            if not await self._still_mine(n):
                await self._drop(n, "its lease was taken over")
            return
        self._leases[n] = (rev, time.monotonic())
        await asyncio.wait_for(self.objects.put(f"p{n}", part.snapshot()), 30)

    # ---- consuming --------------------------------------------------------------------------

    async def _consume(self, part: Partition) -> None:
        """Read the partition's messages in sequence order from the last applied one, forever.

        Each read asks the stream for the first message of the partition's subject at or
        after `seq + 1` (a plain request to the stream leader): the position is only ever
        the state's own, so no consumer's delivery state can skip or repeat a message.
        """
        from nats.js.errors import NotFoundError

        js = self.client.js
        name = subject(self.stream, part.n)
        idle = 0.02
        while self.owned.get(part.n) is part:
            try:
                msg = await asyncio.wait_for(
                    js.get_msg(self.stream, seq=part.seq + 1, subject=name, next=True),
                    ATTEMPT_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except NotFoundError:  # nothing newer yet
                await asyncio.sleep(idle)
                idle = min(0.25, idle * 2)
                continue
            except Exception as exc:  # noqa: BLE001 - no leader, reconnecting: retried
                log.warning("partition %d: reading after sequence %d failed: %r", part.n,
                            part.seq, exc)
                await asyncio.sleep(0.5)
                continue
            idle = 0.02
            part.apply(msg.seq, msg.data)

    # ---- observing (tests, the bench) --------------------------------------------------------

    def caught_up(self) -> bool:
        """True when every partition is owned here and applied up to the stream's end."""
        return self.client.run(self._caught_up(), 10)

    async def _caught_up(self) -> bool:
        from nats.js.errors import NotFoundError

        for n in range(self.partitions):
            part = self.owned.get(n)
            if part is None:
                return False
            try:
                last = await self.client.js.get_last_msg(self.stream, subject(self.stream, n))
            except NotFoundError:
                continue
            if part.seq < last.seq:
                return False
        return True


class AggregatorCollector:
    """The aggregator's own series (how many partitions it owns), partition-free."""

    def __init__(self, aggregator: Aggregator):
        self.aggregator = aggregator

    def collect(self):
        """One gauge: the partitions this process counts now."""
        g = GaugeMetricFamily("pulse_events_partitions_owned",
                              "Partitions of the event stream this aggregator counts now.")
        g.add_metric([], len(self.aggregator.owned))
        yield g


def merged_profiles(aggregator: Aggregator):
    """A connection factory: every owned partition's profiles copied into one memory DB."""
    def open_conn() -> sqlite3.Connection:
        conn = sqlite3.connect("file::memory:", uri=True, check_same_thread=False,
                               isolation_level=None)
        conn.executescript(SCHEMA)
        for n, part in list(aggregator.owned.items()):
            if part.profiles is None:
                continue
            conn.execute("ATTACH DATABASE ? AS src", (f"file:{part.profiles.path}?mode=ro",))
            try:
                for table in ("users", "funnel"):
                    conn.execute(f"INSERT OR REPLACE INTO main.{table} SELECT * FROM src.{table}")
            except sqlite3.Error as exc:
                log.warning("profiles of partition %d not readable: %s", n, exc)
            finally:
                conn.execute("DETACH DATABASE src")
        return conn
    return open_conn


def create_app(cfg: Config, ident: str, registry: CollectorRegistry | None = None,
               client: NatsThread | None = None) -> Flask:
    """The aggregator's WSGI app (/metrics, dead letters, health) with its Aggregator started."""
    from exporters.events import EventsCollector, add_rejected_route
    from exporters.events.profiles import ProfilesCollector
    from pulse.service import add_access, add_standard_routes

    registry = registry or CollectorRegistry()
    section = cfg.exporters.events
    aggregator = Aggregator(cfg, ident, client).start()
    collectors = [("events", EventsCollector(aggregator.view)),
                  ("aggregator", AggregatorCollector(aggregator))]
    if aggregator.profiled:
        p = section.profiles
        collector = ProfilesCollector(
            None, k=cfg.privacy.k_anonymity, funnels=p.funnels.to_dict(),
            refresh_seconds=parse_duration(p.refresh_interval), max_coaches=p.max_coaches,
            open_conn=merged_profiles(aggregator))
        collectors.append(("profiles", collector.start()))
        aggregator.profiles_collector = collector
    registry.register(ScrapeCollector(collectors))
    app = Flask(__name__)
    app.config["PULSE"] = cfg
    app.extensions["pulse.aggregator"] = aggregator
    add_standard_routes(app, registry, COMPONENT)

    add_access(app, cfg, COMPONENT)
    add_rejected_route(app, section.dead_letter_max, lambda limit: (
        aggregator.view.rejected(limit), len(aggregator.view.dead_letters)))
    return app


def main(argv: list[str] | None = None) -> None:
    """Load the config, take partitions, serve /metrics until SIGTERM (then hand them over)."""
    from pulse.config import listen_list
    from pulse.log import register_secrets, setup
    from pulse.service import config_secrets, load_or_exit, parse_args, serve

    args = parse_args(COMPONENT, argv)
    cfg = load_or_exit(args.config)
    setup(COMPONENT, cfg.log_level)
    register_secrets(config_secrets(cfg))
    section = cfg.exporters.events
    if section.log.kind != "jetstream":
        print("exporters.events.log.kind is not jetstream: there is nothing to aggregate",
              file=sys.stderr)
        raise SystemExit(2)
    listen = args.listen or listen_list(section.aggregators.listen)[0]
    app = create_app(cfg, f"{listen}/{os.getpid()}")
    try:
        serve(app, listen, COMPONENT, threads=4)
    finally:
        app.extensions["pulse.aggregator"].stop()


if __name__ == "__main__":
    main()
