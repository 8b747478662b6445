"""The intake's metric state: counters, histograms, idempotency windows and dead letters.

Everything here is rebuilt from log records (`exporters.events.wal`): `plan` decides what a
group of requests changes (retries, repeated event ids, the mapping's series cap) and frames
one record per request; `apply` folds a record in, at start-up replay and after a live commit
alike. Only the log's writer thread calls `plan` and `apply`; readers take `lock`.
"""

from __future__ import annotations

import bisect
import collections
import logging
import threading
import time
from dataclasses import dataclass

import orjson

from exporters.events.mapping import MetricDef
from exporters.events.wal import frame

log = logging.getLogger(__name__)

REJECT_REASONS = ("invalid", "checksum_mismatch", "no_consent")

# Counters of the intake itself that must survive restarts exactly (they are in the log too).
SELF_METRICS = (
    MetricDef("pulse_events_received_total", "counter",
              "Events received in new (not retried) batches.", ()),
    MetricDef("pulse_events_accepted_total", "counter",
              "Events accepted and counted (valid, consented, id not seen before).", ()),
    MetricDef("pulse_events_duplicates_total", "counter",
              "Valid events whose id was seen before; acknowledged but not counted again.", ()),
    MetricDef("pulse_events_rejected_total", "counter",
              "Events rejected, by reason (invalid, checksum_mismatch, no_consent).", ("reason",)),
    MetricDef("pulse_event_lateness_seconds", "histogram",
              "Receive time minus event time of counted events (0 for a clock ahead).",
              ("platform",), buckets=(1, 10, 60, 300, 900, 3600, 6 * 3600, 86400, 3 * 86400,
                                      7 * 86400)),
    MetricDef("pulse_events_late_total", "counter",
              "Counted events received more than late_after after they happened.",
              ("platform",), initial=(("ios",), ("android",), ("web",))),
    MetricDef("pulse_events_unmapped_total", "counter",
              "Counted events that fed no metric of the mapping, by eventType and category "
              "(a category no rule or translation knows is other).", ("eventType", "category")),
)


@dataclass(frozen=True, slots=True)
class Batch:
    """One checked request, ready to commit (built by the intake, never changed after)."""

    batch_id: str
    response: bytes  # the answer, serialised once
    events: tuple[tuple[int, tuple], ...]  # (id hash, ((metric, labels, amount), ...))
    rejected: tuple[tuple[str, int], ...]  # (reason, events rejected for it)
    dead_letters: tuple[dict, ...]
    received: int
    # The observations of `events` summed per series, as if every event were new (None: the
    # writer sums them itself): counters (metric, labels) -> amount, histograms -> values.
    totals: dict[tuple[str, tuple], float] | None = None
    hists: dict[tuple[str, tuple], list[float]] | None = None


@dataclass(frozen=True, slots=True)
class Committed:
    """What the commit of a batch did: its answer and which of its events were new."""

    body: bytes  # the answer (the original one for a retried batch)
    counted: tuple[int, ...]  # positions in `Batch.events` counted for the first time
    replayed: bool = False  # a retry of a batchId already committed


@dataclass(frozen=True, slots=True)
class Planned:
    """One request of a group: its outcome and, when it changes state, its log record."""

    outcome: Committed | Exception
    record: dict | None = None
    framed: bytes = b""


class IdWindow:
    """The last event-id hashes seen: two generations, so memory stays bounded."""

    def __init__(self, capacity: int):
        self.half = max(1, capacity // 2)
        self.current: set[int] = set()
        self.previous: set[int] = set()

    def __contains__(self, key: int) -> bool:
        return key in self.current or key in self.previous

    def add(self, key: int) -> None:
        """Remember a hash, dropping the older generation when the current one is full."""
        if len(self.current) >= self.half:
            self.previous = self.current
            self.current = set()
        self.current.add(key)

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)


class MetricState:
    """Counters and histograms by series, recent batch ids and event ids, dead letters."""

    def __init__(self, metrics: dict[str, MetricDef], *, batch_window_seconds: float = 86400.0,
                 max_batches: int = 100_000, event_id_window: int = 500_000,
                 dead_letter_max: int = 1000):
        self.defs: dict[str, MetricDef] = {m.name: m for m in SELF_METRICS}
        self.defs.update(metrics)
        self.batch_window = batch_window_seconds
        self.max_batches = max_batches
        self.lock = threading.Lock()
        self.counters: dict[str, dict[tuple, float]] = {
            n: {} for n, d in self.defs.items() if d.type != "histogram"}
        self.hists: dict[str, dict[tuple, list[float]]] = {
            n: {} for n, d in self.defs.items() if d.type == "histogram"}
        for reason in REJECT_REASONS:
            self.counters["pulse_events_rejected_total"][(reason,)] = 0.0
        for name in ("received", "accepted", "duplicates"):
            self.counters[f"pulse_events_{name}_total"][()] = 0.0
        self.batches: collections.OrderedDict[str, tuple[float, bytes]] = (
            collections.OrderedDict())
        self.ids = IdWindow(event_id_window)
        self.dead_letters: collections.deque[dict] = collections.deque(maxlen=dead_letter_max)

    # ---- deciding ---------------------------------------------------------------------------

    def plan(self, group: list[Batch]) -> list[Planned]:
        """Decide what each batch changes (retries, repeated ids, series caps); frame it."""
        out: list[Planned] = []
        group_batches: dict[str, Committed] = {}
        group_ids: set[int] = set()
        new_series: dict[str, set] = {}

        def cap(name: str, labels: tuple) -> tuple:
            # A series not seen yet, in the state or this group, may be over the metric's cap.
            d = self.defs[name]
            existing = self.hists[name] if d.type == "histogram" else self.counters[name]
            if labels not in existing:
                fresh = new_series.setdefault(name, set())
                if labels not in fresh:
                    labels = d.capped(labels, len(existing) + len(fresh))
                    if labels not in existing:
                        fresh.add(labels)
            return labels

        for batch in group:
            previous = self.batches.get(batch.batch_id)
            if previous is not None:
                out.append(Planned(Committed(previous[1], (), True)))
                continue
            first = group_batches.get(batch.batch_id)
            if first is not None:
                out.append(Planned(Committed(first.body, (), True)))
                continue
            counts: dict[tuple[str, tuple], float] = {}
            observed: list[list] = []
            counted: list[int] = []
            duplicates = 0
            keys = [key for key, _ in batch.events]
            ids = self.ids
            if (batch.totals is not None and len(set(keys)) == len(keys)
                    and not any(k in ids or k in group_ids for k in keys)):
                # Every event is new (the usual case): the sums the intake made per series
                # stand for its events' observations, one cap decision per series.
                counted = list(range(len(keys)))
                group_ids.update(keys)
                for (name, labels), amount in batch.totals.items():
                    labels = cap(name, labels)
                    counts[(name, labels)] = counts.get((name, labels), 0.0) + amount
                for (name, labels), values in batch.hists.items():
                    labels = cap(name, labels)
                    observed += [[name, labels, v] for v in values]
                keys = ()
            for pos, key in enumerate(keys):
                if key in ids or key in group_ids:
                    duplicates += 1
                    continue
                group_ids.add(key)
                counted.append(pos)
                for name, labels, amount in batch.events[pos][1]:
                    labels = cap(name, labels)
                    if name in self.hists:
                        observed.append([name, labels, amount])
                    else:
                        counts[(name, labels)] = counts.get((name, labels), 0.0) + amount
            c = [[n, list(lbl), v] for (n, lbl), v in counts.items()]
            c.append(["pulse_events_received_total", [], batch.received])
            if counted:
                c.append(["pulse_events_accepted_total", [], len(counted)])
            if duplicates:
                c.append(["pulse_events_duplicates_total", [], duplicates])
            c += [["pulse_events_rejected_total", [reason], n] for reason, n in batch.rejected
                  if n]
            rec = {"b": batch.batch_id, "t": time.time(), "r": orjson.Fragment(batch.response),
                   "c": c}
            if observed:
                rec["h"] = observed
            if counted:
                rec["i"] = [batch.events[i][0] for i in counted]
            if batch.dead_letters:
                rec["d"] = batch.dead_letters
            try:
                payload = orjson.dumps(rec)
            except (TypeError, orjson.JSONEncodeError) as exc:
                out.append(Planned(exc))  # only this batch fails; its neighbours go on
                for key in rec.get("i", ()):
                    group_ids.discard(key)
                continue
            outcome = Committed(batch.response, tuple(counted))
            group_batches[batch.batch_id] = outcome
            out.append(Planned(outcome, rec, frame(payload)))
        return out

    # ---- changing ---------------------------------------------------------------------------

    def apply(self, rec: dict, response: bytes | None = None) -> None:
        """Fold one log record in (replay: response None, read from the record)."""
        for name, labels, amount in rec.get("c", ()):
            series = self.counters.get(name)
            if series is None:
                continue  # a metric the current mapping no longer has
            key = tuple(labels)
            if len(key) == len(self.defs[name].labels):
                series[key] = series.get(key, 0.0) + amount
        for name, labels, value in rec.get("h", ()):
            series = self.hists.get(name)
            if series is None:
                continue
            key = tuple(labels)
            d = self.defs[name]
            if len(key) != len(d.labels):
                continue
            cells = series.get(key)
            if cells is None:
                cells = series[key] = [0.0] * (len(d.buckets) + 2)
            cells[bisect.bisect_left(d.buckets, value)] += 1
            cells[-1] += value
        for key in rec.get("i", ()):
            self.ids.add(key)
        self.dead_letters.extend(rec.get("d", ()))
        bid = rec.get("b")
        if bid is not None:
            body = response if response is not None else orjson.dumps(rec["r"])
            # A right-sized copy: orjson's result keeps its ~4 KiB output buffer, which held
            # for every remembered batch id cost more memory than the window itself.
            self.batches[bid] = (rec["t"], bytes(memoryview(body)))
            horizon = time.time() - self.batch_window
            while self.batches:
                oldest_id, (oldest_t, _) = next(iter(self.batches.items()))
                if len(self.batches) <= self.max_batches and oldest_t >= horizon:
                    break
                del self.batches[oldest_id]

    # ---- snapshots --------------------------------------------------------------------------

    def snapshot(self) -> dict:
        """The whole state as plain data (what a checkpoint writes)."""
        with self.lock:
            return {
                "counters": [[n, list(k), v] for n, s in self.counters.items()
                             for k, v in s.items()],
                "hists": [[n, list(k), v] for n, s in self.hists.items() for k, v in s.items()],
                "batches": [[b, t, r.decode()] for b, (t, r) in self.batches.items()],
                "ids_previous": list(self.ids.previous),
                "ids_current": list(self.ids.current),
                "dead_letters": list(self.dead_letters),
            }

    def load_snapshot(self, snap: dict) -> None:
        """Start from a snapshot (series of metrics the mapping no longer has are dropped)."""
        for name, labels, value in snap["counters"]:
            d = self.defs.get(name)
            if d is not None and d.type != "histogram" and len(labels) == len(d.labels):
                self.counters[name][tuple(labels)] = value
        for name, labels, cells in snap["hists"]:
            d = self.defs.get(name)
            if (d is not None and d.type == "histogram" and len(labels) == len(d.labels)
                    and len(cells) == len(d.buckets) + 2):
                self.hists[name][tuple(labels)] = cells
            elif d is not None:
                log.warning("snapshot: histogram %s changed shape; its history is dropped", name)
        for bid, t, response in snap["batches"]:
            self.batches[bid] = (t, response.encode())
        self.ids.previous = set(snap["ids_previous"])
        self.ids.current = set(snap["ids_current"])
        self.dead_letters.extend(snap["dead_letters"])

    # ---- reading ----------------------------------------------------------------------------

    def read_metrics(self) -> tuple[list[tuple[MetricDef, list]], list[tuple[MetricDef, list]]]:
        """A consistent copy of every counter and histogram series."""
        with self.lock:
            counters = [(self.defs[n], list(s.items())) for n, s in self.counters.items()]
            hists = [(self.defs[n], [(k, list(v)) for k, v in s.items()])
                     for n, s in self.hists.items()]
        return counters, hists

    def rejected(self, limit: int) -> list[dict]:
        """The most recent dead letters, newest first."""
        with self.lock:
            items = list(self.dead_letters)
        return items[::-1][:limit]

    def counter_value(self, name: str, labels: tuple = ()) -> float:
        """One counter series' current value (0 when absent)."""
        with self.lock:
            return self.counters.get(name, {}).get(tuple(labels), 0.0)
