"""The events stream's partitioning and its NATS connection, shared by the intake, the
aggregators and the bridge (`exporters.events.log.kind: jetstream`, docs/scaling.md).

A user's events and profile live in one partition of the stream, chosen by a hash of the
profile pseudonym; a consent withdrawal travels on that partition, in order with the user's
events, to the aggregator that owns it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import threading
import time

import orjson

from pulse.profiles.store import pseudonymise

log = logging.getLogger(__name__)
MSG_ID = "Nats-Msg-Id"
ATTEMPT_TIMEOUT = 5.0  # one publish round; a leader election takes about 4 s


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a key: blake2b, the same in every process (never Python's hash())."""
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def subject(stream: str, partition: int) -> str:
    """The subject of one partition of the stream."""
    return f"{stream}.p.{partition}"


def user_key(salt: str | None, user_id: str) -> bytes:
    """The key a user is partitioned by: its profile pseudonym (raw id only without a salt)."""
    if salt:
        return pseudonymise(salt, user_id)
    return b"u:" + user_id.encode("utf-8", "surrogatepass")


def event_key(salt: str | None, event: dict) -> bytes:
    """The partition key of an accepted event: its user, else its session."""
    user = event.get("userId")
    if user:
        return user_key(salt, user)
    return b"s:" + str(event.get("sessionId", "")).encode("utf-8", "surrogatepass")


class NatsThread:
    """A NATS connection on an asyncio loop of its own thread; `run` calls it from any thread."""

    def __init__(self, servers: list[str], name: str):
        self.servers = list(servers)
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self.nc = None
        self.js = None

    def run(self, coro, timeout: float | None = None):
        """Run a coroutine on the connection's loop and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"{self.name}: no answer within {timeout}s") from None

    def connect(self, timeout: float = 30.0) -> None:
        """Connect (retrying every listed server, reconnecting forever afterwards)."""
        self.run(self._connect(), timeout)

    async def _connect(self):
        import nats

        async def error_cb(exc):
            log.warning("%s: NATS connection: %s", self.name, exc)

        async def disconnected_cb():
            log.warning("%s: disconnected from NATS", self.name)

        async def reconnected_cb():
            log.info("%s: reconnected to %s", self.name, self.nc.connected_url.netloc)

        self.nc = await nats.connect(
            servers=self.servers, name=self.name, max_reconnect_attempts=-1,
            reconnect_time_wait=0.2, connect_timeout=2, allow_reconnect=True,
            error_cb=error_cb, disconnected_cb=disconnected_cb, reconnected_cb=reconnected_cb)
        self.js = self.nc.jetstream(timeout=ATTEMPT_TIMEOUT, publish_async_max_pending=20000)

    def close(self) -> None:
        """Drain the connection and stop the loop (once: a second call does nothing)."""
        if not self.loop.is_running():  # closed already: nothing would run the coroutines
            return
        if self.nc is not None:
            try:
                self.run(self.nc.close(), 5)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        try:  # e.g. a connect that timed out still retrying: finish it before the loop stops
            self.run(_cancel_pending(), 5)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


async def _cancel_pending() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=2)


class LogUnavailable(Exception):
    """The stream could not take a message: no NATS server reachable, or no acknowledgement."""

    dependency = "nats"


def publish_withdrawal(cfg, user_id: str, timeout: float = 10.0,
                       connect_timeout: float = ATTEMPT_TIMEOUT) -> bool | None:
    """Send a consent withdrawal to the partition that holds the user's profile.

    It travels in the stream, in order with the user's events; the owning aggregator deletes
    the profile and answers whether one existed (None: the stream acknowledged it but no
    owner answered within timeout; it is applied whenever the partition is next read).
    Raises LogUnavailable when the stream did not acknowledge it: then nothing was sent.
    """
    log_cfg = cfg.exporters.events.log
    uid = user_key(cfg.privacy.get("salt"), user_id)
    client = NatsThread(log_cfg.servers, "privacy-withdrawal")
    try:
        try:
            client.connect(connect_timeout)
        except Exception as exc:  # noqa: BLE001 - refused, timed out: the same to the caller
            raise LogUnavailable(f"no NATS server of exporters.events.log.servers answered "
                                 f"within {connect_timeout:g}s") from exc
        return client.run(_withdraw(client, log_cfg, uid, timeout),
                          timeout + 3 * ATTEMPT_TIMEOUT)
    except TimeoutError as exc:  # the whole round: the publish was never acknowledged
        raise LogUnavailable("the stream did not acknowledge the withdrawal in time") from exc
    finally:
        client.close()


async def _withdraw(client: NatsThread, log_cfg, uid: bytes, timeout: float) -> bool | None:
    inbox = client.nc.new_inbox()
    sub = await client.nc.subscribe(inbox, max_msgs=1)
    at = time.time()
    payload = orjson.dumps({"w": uid.hex(), "t": at, "reply": inbox})
    n = partition_of(uid, log_cfg.partitions)
    msg_id = f"withdraw:{uid.hex()}:{at}"
    # A leader election takes about 4 s: a second attempt with the same id (a duplicate the
    # stream drops) rides it out; beyond that the caller answers 503 and nothing was applied.
    for attempt in range(2):
        try:
            await client.js.publish(subject(log_cfg.stream, n), payload,
                                    headers={MSG_ID: msg_id}, timeout=ATTEMPT_TIMEOUT)
            break
        except Exception as exc:  # noqa: BLE001 - no responders, timeouts, disconnected
            if attempt:
                raise LogUnavailable(f"the stream did not acknowledge the withdrawal: "
                                     f"{type(exc).__name__}") from exc
            await asyncio.sleep(0.5)
    try:
        answer = await sub.next_msg(timeout)
    except Exception:  # noqa: BLE001 - no owner answered in time
        return None
    return answer.data == b"true"
