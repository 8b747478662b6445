"""The events log on NATS JetStream (`exporters.events.log.kind: jetstream`, docs/scaling.md).

Intakes publish every accepted batch to a replicated stream and answer only once JetStream
acknowledged each of its messages; aggregators (`exporters.events.aggregator`) count the
stream. A batch becomes one message per partition it touches, on subject
`<stream>.p.<n>`, partitioned by a hash of the pseudonymous user (the session for anonymous
events) so a user's events and profile live in one partition. The message id
`<batchId>:<n>` makes a retried batch a duplicate JetStream drops (within
`log.duplicate_window`), whichever intake it reaches; the batch's own record (received and
rejected counts, dead letters, the answer) rides on its home partition, and a retry gets the
original answer read back from the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import orjson

from exporters.events.state import Batch, Committed
from pulse.config import parse_duration
from pulse.profiles.store import ProfileStore
from pulse.profiles.stream import (  # noqa: F401 - the partitioning the log shares
    ATTEMPT_TIMEOUT,
    MSG_ID,
    NatsThread,
    event_key,
    partition_of,
    publish_withdrawal,
    subject,
    user_key,
)

log = logging.getLogger(__name__)


class LogUnavailable(Exception):
    """JetStream did not acknowledge in time: nothing may be answered as accepted."""


async def ensure_stream(js, log_cfg) -> None:
    """Create the stream, or bring an existing one to the configured replicas and window."""
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import BadRequestError

    config = StreamConfig(name=log_cfg.stream, subjects=[f"{log_cfg.stream}.p.*"],
                          num_replicas=log_cfg.replicas, storage=StorageType.FILE,
                          duplicate_window=parse_duration(log_cfg.duplicate_window))
    try:
        await js.add_stream(config)
    except BadRequestError as exc:
        if exc.err_code != 10058:  # anything but "in use with a different configuration"
            raise
        await js.update_stream(config)


def wait_for_stream(client: NatsThread, log_cfg, timeout: float = 60.0) -> None:
    """Ensure the stream exists, retrying while the cluster elects its leaders."""
    from nats.js.errors import BadRequestError

    deadline = time.monotonic() + timeout
    while True:
        try:
            client.run(ensure_stream(client.js, log_cfg), ATTEMPT_TIMEOUT + 1)
            return
        except BadRequestError as exc:  # e.g. 10005 no suitable peers: a config problem
            raise LogUnavailable(f"stream {log_cfg.stream}: {exc.description}") from None
        except Exception as exc:  # noqa: BLE001 - no meta leader yet, timeouts: retried
            if time.monotonic() > deadline:
                raise LogUnavailable(f"stream {log_cfg.stream} not available: {exc}") from None
            log.info("waiting for JetStream: %s", exc)
            time.sleep(0.5)


class JetStreamLog:
    """The intake's side: one checked batch in, JetStream acknowledgements of it out.

    The same interface as `exporters.events.store.EventStore` where the intake uses it
    (`commit`, `close`); counting happens in the aggregators, so `read_metrics` is empty.
    """

    def __init__(self, cfg, client: NatsThread | None = None):
        log_cfg = cfg.exporters.events.log
        self.stream = log_cfg.stream
        self.partitions = log_cfg.partitions
        self.publish_timeout = parse_duration(log_cfg.publish_timeout)
        self.salt = cfg.privacy.get("salt")
        section = cfg.exporters.events
        self.projector = None
        if section.profiles.enabled and self.salt:
            # Projection only (no I/O): what each consented event changes in its profile.
            self.projector = ProfileStore(
                Path(":memory:"), self.salt, funnels=section.profiles.funnels.to_dict(),
                pii_patterns=cfg.privacy.pii_patterns.values(),
                dedup_window_seconds=parse_duration(section.profiles.dedup_window))
        self.client = client or NatsThread(log_cfg.servers, "events-intake")
        if client is None:
            self.client.connect()
            wait_for_stream(self.client, log_cfg)
        self.dead_letters: list = []

    # ---- the messages of a batch --------------------------------------------------------------

    def messages(self, batch: Batch, events: list[dict]) -> tuple[int, list[tuple[int, bytes]]]:
        """The home partition and (partition, payload) of every message a batch becomes."""
        parts: dict[int, dict] = {}
        raw_by_part: dict[int, list[dict]] = {}
        for (key, observations), event in zip(batch.events, events, strict=True):
            p = partition_of(event_key(self.salt, event), self.partitions)
            parts.setdefault(p, {"b": batch.batch_id, "e": []})["e"].append([key, observations])
            if self.projector is not None and event["privacyFlags"].get("canProfile") is True:
                raw_by_part.setdefault(p, []).append(event)
        for p, raw in raw_by_part.items():
            observations = self.projector.project(raw)
            if observations:
                parts[p]["o"] = [[o[0].hex(), *o[1:]] for o in observations]
        home = partition_of(b"b:" + batch.batch_id.encode("utf-8", "surrogatepass"),
                            self.partitions)
        record = parts.setdefault(home, {"b": batch.batch_id, "e": []})
        record.update({"home": True, "n": batch.received, "x": list(batch.rejected),
                       "r": orjson.Fragment(batch.response)})
        if batch.dead_letters:
            record["d"] = batch.dead_letters
        return home, [(p, orjson.dumps(parts[p])) for p in sorted(parts)]

    def commit(self, batch: Batch, events: list[dict] = (), timeout: float | None = None
               ) -> Committed:
        """Publish a batch and return once JetStream acknowledged all of it (or raise)."""
        from exporters.events.store import StoreError

        home, messages = self.messages(batch, list(events))
        try:
            acks = self.client.run(self._publish(batch.batch_id, messages),
                                   (timeout or self.publish_timeout) + ATTEMPT_TIMEOUT)
        except (LogUnavailable, TimeoutError) as exc:
            raise StoreError(str(exc)) from None
        ack = acks[home]
        if ack.duplicate:
            # A retry: the answer is the original one, read back from the stream.
            try:
                original = self.client.run(self.client.js.get_msg(self.stream, ack.seq),
                                           ATTEMPT_TIMEOUT + 1)
                body = orjson.dumps(orjson.loads(original.data)["r"])
            except Exception as exc:  # noqa: BLE001 - the retry is accepted either way
                log.warning("batch %s: original answer not readable (%s)", batch.batch_id, exc)
                body = batch.response
            return Committed(body, (), True)
        return Committed(batch.response, ())

    async def _publish(self, batch_id: str, messages: list[tuple[int, bytes]]) -> dict:
        """Publish every message with its id; on any failure resend them all (same ids)."""
        deadline = time.monotonic() + self.publish_timeout
        js = self.client.js
        attempt = 0
        while True:
            attempt += 1
            try:
                futures = [await js.publish_async(
                    subject(self.stream, p), payload, headers={MSG_ID: f"{batch_id}:{p}"})
                    for p, payload in messages]
                acks = await asyncio.wait_for(asyncio.gather(*futures), ATTEMPT_TIMEOUT)
                return {p: ack for (p, _), ack in zip(messages, acks, strict=True)}
            except Exception as exc:  # noqa: BLE001 - no responders, timeouts, reconnects
                if time.monotonic() >= deadline:
                    raise LogUnavailable(f"JetStream did not acknowledge batch {batch_id} "
                                         f"after {attempt} attempts: {exc!r}") from None
                log.warning("batch %s: publish attempt %d failed (%r); resending", batch_id,
                            attempt, exc)
                await asyncio.sleep(min(0.5, 0.05 * attempt))

    # ---- what the intake reads (the counting is the aggregators') ----------------------------

    def read_metrics(self):
        """No series: the aggregators export the counts."""
        return [], []

    def close(self) -> None:
        """Close the NATS connection."""
        self.client.close()
        if self.projector is not None:
            self.projector.close()
