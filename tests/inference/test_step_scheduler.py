"""The continuous scheduler's rules with a fake step engine whose every model call waits for the
test's permit: which group runs next (a fair share of the model's time, and its bound), who joins
a group and who waits, load reporting, out-of-memory splits, leaving while queued, stopping."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from apps.common.wire.contracts import FluxInput
from apps.common.wire.inference import InferenceError, InferenceRequest, InferenceResult
from apps.inference.engine import BatchItem, ItemOutcome, Retired
from apps.inference.scheduler import StepScheduler

Event = dict[str, object]


class FakeOutOfMemory(RuntimeError):
    pass


@dataclass
class FakeGroup:
    engine: FakeEngine
    key: Hashable
    members: list[list[object]] = field(default_factory=list)  # [item, steps done, total]
    last_call_s: float = 0.0

    @property
    def rows(self) -> int:
        return sum(m[0].request.input.num_images for m in self.members)  # type: ignore[attr-defined]

    def admit(self, items: list[BatchItem]) -> list[Retired]:
        self.engine.joined += [(item.request.task_id, item.encoded) for item in items]
        self.members += [[item, 0, item.request.input.num_inference_steps] for item in items]
        return []

    def step(self) -> list[Retired]:
        assert self.engine.permits.acquire(timeout=30), "the test gave no permit for a call"
        rows = self.rows
        self.engine.calls.append((self.key, rows))
        # Binary fractions of a second: equal virtual times tie exactly, as the bounds assume.
        if self.engine.constant_calls:
            self.last_call_s = 1 / 16  # launch-bound: a call takes as long whatever it holds
        else:
            # Compute-bound: a call takes time in proportion to the tokens of its images.
            self.last_call_s = rows * (int(self.key) // 16) ** 2 / 1024  # type: ignore[call-overload]
        if self.engine.oom_above is not None and rows > self.engine.oom_above:
            raise FakeOutOfMemory(f"{rows} rows")
        retired, staying = [], []
        for member in self.members:
            item, done, total = member
            assert isinstance(item, BatchItem) and isinstance(done, int) and isinstance(total, int)
            member[1] = done = done + 1
            if not item.on_step(done, total):
                retired.append(Retired(item, lambda: None))
            elif done == total:
                result = InferenceResult(images=[], compute_ms=1.0, batch_size=rows)
                retired.append(Retired(item, _outcome(result)))
            else:
                staying.append(member)
        self.members = staying
        return retired

    def split(self) -> FakeGroup:
        half = max(1, len(self.members) // 2)
        other = FakeGroup(self.engine, self.key, self.members[half:])
        self.members = self.members[:half]
        return other

    def fail(self, error: InferenceError) -> list[Retired]:
        retired = [Retired(m[0], _outcome(error)) for m in self.members]  # type: ignore[arg-type]
        self.members = []
        return retired


def _outcome(outcome: ItemOutcome) -> Callable[[], ItemOutcome]:
    return lambda: outcome


@dataclass
class FakeEngine:
    models: list[str] = field(default_factory=lambda: ["flux"])
    permits: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    calls: list[tuple[Hashable, int]] = field(default_factory=list)
    oom_above: int | None = None
    constant_calls: bool = False
    encoded: list[list[str]] = field(default_factory=list)
    joined: list[tuple[str, object]] = field(default_factory=list)

    def shape_key(self, request: InferenceRequest) -> Hashable:
        return request.input.width

    def open_group(self, request: InferenceRequest) -> FakeGroup:
        if request.input.prompt == "breaks the loop":
            raise RuntimeError("a fault outside any model call")
        return FakeGroup(self, self.shape_key(request))

    def is_out_of_memory(self, exc: BaseException) -> bool:
        return isinstance(exc, FakeOutOfMemory)

    def encode_prompts(self, requests: list[InferenceRequest]) -> list[object]:
        self.encoded.append([r.task_id for r in requests])
        return [f"prompt of {r.task_id}" for r in requests]

    def cost(self, request: InferenceRequest) -> int:
        return request.input.num_images

    def batch_key(self, request: InferenceRequest) -> Hashable:
        return self.shape_key(request)

    def run_batch(self, items: list[BatchItem]) -> list[ItemOutcome]:
        raise NotImplementedError

    def warm_up(self) -> None:
        pass

    def holdings(self) -> dict[str, Any]:
        return {}

    def check_device(self) -> None:
        pass


def req(task: str, side: int, steps: int, images: int = 1) -> InferenceRequest:
    spec = FluxInput(
        prompt=task, width=side, height=side, num_inference_steps=steps, num_images=images
    )
    return InferenceRequest(task_id=task, input=spec)


async def until(check: Callable[[], bool], what: str) -> None:
    """Poll `check` (on the event loop, so the scheduler's events keep flowing) with a deadline."""
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


@dataclass
class Harness:
    engine: FakeEngine
    scheduler: StepScheduler
    events: dict[str, list[Event]] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def submit(self, request: InferenceRequest, leave_after: int | None = None) -> None:
        seen = self.events.setdefault(request.task_id, [])

        async def consume() -> None:
            async for event in self.scheduler.run(request):
                seen.append(event.model_dump())
                if leave_after is not None and event.model_dump().get("step") == leave_after:
                    return

        self.tasks[request.task_id] = asyncio.create_task(consume())

    async def start(self, queued: int) -> None:
        """Start the engine once `queued` requests wait, so they are admitted together."""
        await until(lambda: self.scheduler.load().queued == queued, f"{queued} queued")
        self.scheduler.start()

    async def calls(self, n: int) -> None:
        """Let exactly `n` more model calls happen."""
        target = len(self.engine.calls) + n
        self.engine.permits.release(n)
        await until(lambda: len(self.engine.calls) >= target, f"{n} calls")

    async def finish(self, task: str) -> Event:
        await asyncio.wait_for(self.tasks[task], timeout=20)
        return self.events[task][-1]


def with_scheduler(
    test: Callable[[Harness], Awaitable[None]],
    *,
    max_batch: int = 4,
    oom_above: int | None = None,
    constant_calls: bool = False,
) -> None:
    async def main() -> None:
        engine = FakeEngine(oom_above=oom_above, constant_calls=constant_calls)
        scheduler = StepScheduler(engine, max_batch_size=max_batch)  # type: ignore[arg-type]
        try:
            await test(Harness(engine, scheduler))
        finally:
            engine.permits.release(10_000)
            await scheduler.stop()

    asyncio.run(main())


def test_a_new_shape_runs_next_and_the_cheapest_waits_one_call_of_each_other() -> None:
    async def scenario(h: Harness) -> None:
        h.submit(req("big", 256, 30))
        await h.start(queued=1)
        await h.calls(3)  # the engine now waits inside big's 4th call
        h.submit(req("small", 64, 3))
        await until(lambda: h.scheduler.load().queued == 1, "small queued")
        while not h.tasks["small"].done():
            await h.calls(1)
        assert (await h.finish("small"))["type"] == "result"
        after = [key for key, _ in h.engine.calls[3:]]
        # big's call in flight, then small at once (a new group takes the smallest virtual time),
        # then big once per 256 / 16 = 16 of small's calls (a big call takes 16x as long):
        # small waits at most one of big's calls.
        assert after == [256, 64, 256, 64, 64], after

    with_scheduler(scenario)


def test_turns_follow_the_cost_of_a_step_per_image() -> None:
    async def scenario(h: Harness) -> None:
        h.submit(req("a", 128, 40))  # 64 tokens a step
        h.submit(req("b", 256, 40))  # 256 tokens a step
        await h.start(queued=2)
        await h.calls(20)
        order = [key for key, _ in h.engine.calls]
        # Between two calls of b, a runs at most ceil(256 / 64) = 4 times (b's calls take 4x as
        # long), and b never twice in a row: each image gets the same share of the model's time.
        assert order.count(128) == 4 * order.count(256), order
        runs = "".join("a" if k == 128 else "b" for k in order)
        assert "aaaaa" not in runs and "bb" not in runs, runs

    with_scheduler(scenario)


def test_a_group_of_more_images_gets_more_calls_when_calls_cost_the_same() -> None:
    async def scenario(h: Harness) -> None:
        for i in range(4):
            h.submit(req(f"a{i}", 64, 40))
        h.submit(req("b", 128, 40))
        await h.start(queued=5)
        await h.calls(25)
        runs = "".join("a" if k == 64 else "b" for k, _ in h.engine.calls)
        # Four images against one, calls of equal length: four calls of a for each of b.
        assert runs.count("a") == 4 * runs.count("b"), runs
        assert "aaaaa" not in runs and "bb" not in runs, runs

    with_scheduler(scenario, constant_calls=True)


def test_a_shape_fills_up_to_the_batch_limit_and_other_shapes_do_not_wait_behind_it() -> None:
    async def scenario(h: Harness) -> None:
        for i in range(3):
            h.submit(req(f"a{i}", 64, 4))
        h.submit(req("wide", 128, 4, images=2))
        h.submit(req("b", 128, 4))  # wide + b = 3 images > the limit of 2
        await h.start(queued=6)
        await until(lambda: h.scheduler.load().queued == 2, "a2 and b queued")
        load = h.scheduler.load()
        # wide started although a2 came first: a full shape does not hold up another one.
        assert (load.running, load.capacity) == (4, 2)
        while not all(h.tasks[t].done() for t in ("a0", "a1", "wide", "a2", "b")):
            await h.calls(1)
        for task in ("a0", "a1", "wide", "a2", "b"):
            assert (await h.finish(task))["type"] == "result"
        load = h.scheduler.load()
        assert (load.queued, load.running) == (0, 0)
        assert max(rows for _, rows in h.engine.calls) == 2

    with_scheduler(scenario, max_batch=2)


def test_prompts_of_waiting_requests_are_encoded_ahead_in_one_call() -> None:
    async def scenario(h: Harness) -> None:
        for i in range(5):
            h.submit(req(f"a{i}", 64, 2))
        for i in range(3):
            h.submit(req(f"b{i}", 128, 2))
        await h.start(queued=8)
        await until(lambda: len(h.engine.encoded) == 1, "one encoder call")
        # Two of each shape joined at once (encoded as they join); of those waiting, up to the
        # batch limit of images per shape were encoded in one call: a4 was not.
        assert h.engine.encoded == [["a2", "a3", "b2"]]
        h.engine.permits.release(100)
        for task in [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(3)]:
            assert (await h.finish(task))["type"] == "result"
        joined = dict(h.engine.joined)
        assert joined["a0"] is None and joined["a3"] == "prompt of a3"
        assert sum(len(call) for call in h.engine.encoded) == 4, "a4: once, ahead or on joining"

    with_scheduler(scenario, max_batch=2)


def test_out_of_memory_splits_the_group_and_a_lone_request_fails() -> None:
    async def scenario(h: Harness) -> None:
        for i in range(4):
            h.submit(req(f"r{i}", 64, 2))
        h.submit(req("too-big", 128, 2, images=3))
        await h.start(queued=7)
        await until(lambda: h.scheduler.load().queued == 0, "all admitted")
        h.engine.permits.release(100)
        finals = [await h.finish(f"r{i}") for i in range(4)]
        assert all(f["type"] == "result" for f in finals)
        assert (await h.finish("too-big"))["code"] == "out_of_memory"
        # 4 rows did not fit, then 2 did not (the first half, later the second), then each ran
        # alone: 4 requests x 2 steps.
        rows_of_64 = [rows for key, rows in h.engine.calls if key == 64]
        assert rows_of_64[:3] == [4, 2, 1], rows_of_64
        assert sorted(r for r in rows_of_64 if r > 1) == [2, 2, 4]
        assert rows_of_64.count(1) == 8
        # The shape stays at what fitted: of two new requests, one runs and one waits.
        while h.engine.permits.acquire(blocking=False):
            pass  # take back the permits left over: the engine waits in r4's first call
        h.submit(req("r4", 64, 2))
        h.submit(req("r5", 64, 2))
        await until(lambda: h.scheduler.load().queued == 1, "r5 waits")
        assert h.scheduler.load().running == 1
        h.engine.permits.release(100)
        for task in ("r4", "r5"):
            assert (await h.finish(task))["type"] == "result"

    with_scheduler(scenario, oom_above=1)


def test_a_caller_that_leaves_while_queued_or_running_is_dropped() -> None:
    async def scenario(h: Harness) -> None:
        h.submit(req("runs", 64, 50))
        h.submit(req("leaves-running", 64, 50), leave_after=2)
        h.submit(req("queued", 64, 5))
        await h.start(queued=3)
        await until(lambda: h.scheduler.load().queued == 1, "one queued")
        await h.calls(2)
        await h.finish("leaves-running")  # its caller left after step 2
        h.tasks["queued"].cancel()  # this one's caller goes away before it ever started
        await h.calls(1)  # the leaver's row is in this call, and out after it
        await until(lambda: h.scheduler.load().queued == 0, "the queued leaver dropped")
        await h.calls(1)
        assert h.engine.calls[-2:] == [(64, 2), (64, 1)], h.engine.calls
        assert h.scheduler.load().running == 1
        assert not h.events["queued"], "it never started"

    with_scheduler(scenario, max_batch=2)


def test_a_fault_of_the_engine_loop_answers_every_request() -> None:
    async def scenario(h: Harness) -> None:
        h.submit(req("running", 64, 100))
        await h.start(queued=1)
        await h.calls(1)
        h.submit(req("breaks the loop", 128, 2))
        await until(lambda: h.scheduler.load().queued == 1, "it waits")
        await h.calls(1)  # the loop admits it after this call
        for task in ("running", "breaks the loop"):
            final = await h.finish(task)
            assert final["type"] == "error" and final["code"] == "pipeline_error", final
        h.submit(req("after", 64, 2))
        await h.calls(2)
        assert (await h.finish("after"))["type"] == "result", "the engine carries on"

    with_scheduler(scenario)


def test_stop_answers_every_request() -> None:
    async def scenario(h: Harness) -> None:
        h.submit(req("running", 64, 100))
        h.submit(req("waiting", 64, 5))
        await h.start(queued=2)
        await until(lambda: h.scheduler.load().queued == 1, "one queued")
        stopping = asyncio.create_task(h.scheduler.stop())
        await until(lambda: h.scheduler.stopping, "stop begun")
        h.engine.permits.release(1)  # the call in flight ends, then the engine stops
        await stopping
        for task in ("running", "waiting"):
            final = await h.finish(task)
            assert final["type"] == "error" and final["code"] == "unavailable", final

    with_scheduler(scenario, max_batch=1)
