"""Jobs held by a dead worker come back within seconds, not after the visibility timeout.

Each worker's main process lists, every `worker_heartbeat_s`, the deliveries it holds (reserved
or running) in a Redis set that expires after `worker_lease_s`, and registers itself in
`keys.WORKERS`. The same loop, in whichever worker takes the reclaim lock, looks at every message
delivered more than a lease ago and not yet acknowledged: one that no live worker lists is put
back at the head of its lane (`Unacked.put_back`, atomic with that check), and the next free slot
runs it again. That covers a worker SIGKILLed with its pool (nobody left to requeue), a pod lost
with its node, and a Redis restart under a running worker (its tasks are cancelled on the lost
connection and their acks fail; they are no longer listed). A live worker keeps listing a job for
as long as it runs, however long, so a long job is never taken from it. kombu's own visibility
timeout stays as the backstop.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable

import redis
from redis.exceptions import RedisError

from apps.common.redis import keys
from apps.common.redis.leases import LEASE_LUA
from apps.common.service.logging import get_logger
from apps.worker.unacked import Unacked

log = get_logger(__name__)


class WorkerLease:
    """One worker's heartbeat (what it holds) and the reclaim of what dead workers held."""

    def __init__(
        self,
        client: redis.Redis,
        held: Callable[[], Iterable[str]],
        *,
        lease_s: float,
        heartbeat_s: float,
        worker_id: str | None = None,
        each_beat: Callable[[], object] | None = None,
    ) -> None:
        """`each_beat` also runs on every beat (the fair-share release's safety net)."""
        self.worker_id = worker_id or uuid.uuid4().hex
        self._redis = client
        self._held = held
        self._lease_ms = int(lease_s * 1000)
        self._heartbeat_s = heartbeat_s
        self._unacked = Unacked(client)
        self._lease = client.register_script(LEASE_LUA)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._each_beat = each_beat

    def beat(self) -> None:
        """Say which deliveries this worker holds, for one more lease."""
        tags = sorted(set(self._held()))
        key = keys.worker_holds_key(self.worker_id)
        now_ms = int(time.time() * 1000)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if tags:
                pipe.sadd(key, *tags)
                pipe.pexpire(key, self._lease_ms)
            pipe.zadd(keys.WORKERS, {self.worker_id: now_ms})
            pipe.zremrangebyscore(keys.WORKERS, "-inf", now_ms - 10 * self._lease_ms)
            pipe.execute()

    def reclaim(self) -> list[str]:
        """Put back every delivery older than a lease that no live worker holds; their tags."""
        if not self._lease(keys=[keys.RECLAIM_LOCK], args=[self.worker_id, self._lease_ms]):
            return []  # another worker reclaims
        now = time.time()
        live = self._redis.zrangebyscore(keys.WORKERS, now * 1000 - self._lease_ms, "+inf")
        held_in = [
            keys.worker_holds_key(w.decode() if isinstance(w, bytes) else str(w)) for w in live
        ]
        reclaimed = []
        for tag in self._unacked.delivered_before(now - self._lease_ms / 1000):
            if self._unacked.put_back(tag, unless_held_in=held_in):
                reclaimed.append(tag)
        if reclaimed:
            log.warning(
                "put back jobs of a worker that died or lost Redis",
                count=len(reclaimed),
                delivery_tags=reclaimed,
            )
        return reclaimed

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fluxgate-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating; what this worker still holds is reclaimed once its lease lapses (a warm
        shutdown acknowledges or requeues it first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._heartbeat_s * 2)
        with contextlib.suppress(RedisError):
            self._redis.zrem(keys.WORKERS, self.worker_id)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
                self.reclaim()
                if self._each_beat is not None:
                    self._each_beat()
            except RedisError as exc:
                log.warning("worker lease not renewed; retrying", error=repr(exc))
            except Exception:  # the lease must outlive any one bad beat
                log.exception("worker lease beat failed")
            self._stop.wait(self._heartbeat_s)
