"""A guard in your own test suite: fail a test in which one greenlet held the gevent hub too long.

    def test_concurrent_queries(hub_block_guard):
        hub_block_guard.max_ms = 20          # default 10
        ...

    @pytest.mark.hub_block_guard(max_ms=50)
    def test_slow_but_cooperative(hub_block_guard): ...

    @pytest.mark.hub_block_guard(max_queue_ms=100)   # also fail on queueing (off by default)
    def test_many_greenlets(hub_block_guard): ...

    @pytest.mark.hub_block_guard(max_connect_ms=5)   # handshakes too (default 50)
    def test_connects(hub_block_guard): ...

The fixture runs probe.monitor's slice tracer, heartbeat and watchdog during the test body
(not its fixtures' setup: they are not the code under test). A single greenlet run (a slice,
switch to switch) longer than max_ms fails the test, with its length, whether the thread was
blocked in a call or computing on the CPU, and the frames sampled while it ran
(blockbuster does this for asyncio; nothing did it for gevent). A slice that mostly waited
for a CPU other processes had is the machine's noise, reported but never a failure. Many
greenlets taking short turns make the others wait too (queueing: the heartbeat's lateness):
that is reported in the test's sections and fails only when max_queue_ms asks for it.

A connection's handshake computes inside libpq without yielding (SCRAM's 4,096 hashing
rounds, TLS): 5-15 ms of CPU per connect on a 2-core machine while the server hashes its half
beside it (schedstat around psycopg.connect; benchmarks/guard_soak.py). That is what a
connection costs, once per connection behind a pool, not a driver that fails to cooperate,
so a run inside a connect is held to
max_connect_ms (50 by default), and is reported. What such a run spent asleep is still held to
max_ms like any block: a connect that blocks (psycopg2 without psycogreen waiting on the
server, libpq resolving a host name) fails; a few ms asleep (a virtual machine's stolen time
reads as asleep) does not.

Your test process must be patched by gevent (monkey.patch_all() at the top of conftest.py), as
your app is in production: the guard patches nothing itself. This module imports neither
gevent nor the probe's measuring code until a test asks for the fixture, so having
gevent-probe installed costs other test suites nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from probe.measurement import HeldSlice

DEFAULT_MAX_MS = 10.0
DEFAULT_MAX_CONNECT_MS = 50.0
# Slices are classified and their stacks sampled from this length on, whatever max_ms is, so
# that the longest one is known even when max_ms is changed during the test.
SAMPLE_FROM_MS = 2.0


class HubBlockGuard:
    def __init__(self, max_ms: float, max_queue_ms: float | None = None,
                 max_connect_ms: float = DEFAULT_MAX_CONNECT_MS) -> None:
        from probe import connects
        from probe.monitor import LoopMonitor

        threshold = min(max_ms, SAMPLE_FROM_MS) / 1000
        # Where cost does not matter: a beat every millisecond, the clocks at every slow path.
        self.monitor = LoopMonitor(interval_s=0.001, threshold_s=threshold,
                                   sample_from_s=threshold / 2,
                                   clocks_every_s=threshold / 4).start()
        connects.instrument(self.monitor.tracer)  # the drivers the test module imported
        self.max_ms = max_ms
        self.max_queue_ms = max_queue_ms
        self.max_connect_ms = max_connect_ms

    def stop(self) -> None:
        from probe import connects

        connects.release(self.monitor.tracer)
        self.monitor.stop()

    @property
    def max_ms(self) -> float:
        return self._max_ms

    @max_ms.setter
    def max_ms(self, value: float) -> None:
        # Slices are classified from the tracer's threshold on, fixed when it starts: a lower
        # limit set later would pass slices it never recorded.
        floor = self.monitor.threshold_s * 1000
        if value < floor:
            raise ValueError(f"hub_block_guard.max_ms below {floor:g} ms: set it with "
                             f"@pytest.mark.hub_block_guard(max_ms={value:g}) instead")
        self._max_ms = value

    def finish(self) -> tuple[str | None, str]:
        """Stop watching: (the failure message or None, a summary for the test's report)."""
        self.monitor.settle()
        self.stop()
        report = self.monitor.report()
        slices = report.slices
        assert slices is not None
        counted = [h for h in slices.longest if h.kind != "preempted"]
        handshakes = [h for h in counted if h.in_connect and h.off_cpu_ms <= self.max_ms]
        held = [h for h in counted if h not in handshakes]
        worst = held[0] if held else None
        queue_ms = report.max_ms
        summary = (f"longest greenlet run {worst.ms:.1f} ms ({worst.kind}); "
                   if worst else "no greenlet ran longer than "
                   f"{self.monitor.threshold_s * 1000:g} ms; ")
        summary += (f"{slices.count:,} runs; the other greenlets waited up to {queue_ms:.1f} ms "
                    "(queueing, from a heartbeat)")
        if slices.connects is not None:
            summary += (f"; {slices.connects.calls} connect(s), handshakes holding the hub "
                        f"up to {slices.connects.longest_ms:.1f} ms (allowed "
                        f"{self.max_connect_ms:g} ms by max_connect_ms)")
        preempted = [h for h in slices.longest if h.kind == "preempted"]
        if preempted:
            summary += (f"; {len(preempted)} run(s) waited for a CPU other processes (or the "
                        f"VM's host) had (up to {preempted[0].ms:.1f} ms): not counted")
        if worst is not None and worst.ms > self.max_ms:
            return held_message(worst, self.max_ms) + f"\n\n{summary}", summary
        if handshakes and handshakes[0].ms > self.max_connect_ms:
            return (held_message(handshakes[0], self.max_connect_ms, "max_connect_ms")
                    + f"\n\n{summary}"), summary
        if self.max_queue_ms is not None and queue_ms > self.max_queue_ms:
            return (f"greenlets waited up to {queue_ms:.1f} ms for the hub (allowed "
                    f"{self.max_queue_ms:g} ms by max_queue_ms): many short runs queued, no "
                    f"single one held it past {self.max_ms:g} ms\n\n{summary}"), summary
        return None, summary


def held_message(worst: HeldSlice, max_ms: float, limit: str = "") -> str:
    """Why a test failed: how long one greenlet held the hub, how, and where."""
    from probe.frames import caller_line, culprit_line

    how = (f"blocked: asleep in a call for {worst.off_cpu_ms:.1f} ms while holding it "
           f"({worst.on_cpu_ms:.1f} ms on the CPU)" if worst.kind == "blocked" else
           f"computing: {worst.on_cpu_ms:.1f} ms on the CPU without yielding")
    who = ("a connection's handshake" if worst.in_connect else
           "the hub itself (a callback)" if worst.hub else "a greenlet")
    allowed = f"{max_ms:g} ms" + (f" by {limit}" if limit else "")
    lines = [f"{who} held the gevent hub for {worst.ms:.1f} ms (longest run; allowed "
             f"{allowed}), {how}"]
    stack = worst.stack
    where = culprit_line(stack) if stack else None
    caller = caller_line(stack) if stack else None
    if worst.frames:
        lines.append("sampled while it ran: " + "; then ".join(worst.frames))
    if caller and caller != where:
        lines.append(f"called from {caller}")
    if not worst.frames:
        lines.append("the frames that held it were not sampled"
                     + (f"; it yielded in {worst.yielded_at}" if worst.yielded_at else ""))
    if stack:
        lines += ["", "stack of the hub thread, first sampled during that run:", *stack]
    return "\n".join(lines)


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "hub_block_guard(max_ms=10, max_queue_ms=None, "
                            "max_connect_ms=50): the longest a greenlet may hold the gevent "
                            "hub in a test using the hub_block_guard fixture, how long "
                            "greenlets may queue for it (optional), and how long a "
                            "connection's handshake may compute")


@pytest.fixture
def hub_block_guard(request: Any) -> Iterator[HubBlockGuard]:
    marker = request.node.get_closest_marker("hub_block_guard")
    kwargs = marker.kwargs if marker else {}
    queue = kwargs.get("max_queue_ms")
    guard = HubBlockGuard(float(kwargs.get("max_ms", DEFAULT_MAX_MS)),
                          float(queue) if queue is not None else None,
                          float(kwargs.get("max_connect_ms", DEFAULT_MAX_CONNECT_MS)))
    request.node.stash[_GUARD] = guard
    yield guard
    guard.stop()


_GUARD = pytest.StashKey[HubBlockGuard]()


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: Any) -> Any:
    # The innermost wrapper, so the window is the test body alone: pytest's own work around
    # it (output capture, fixtures) is not the code under test. Judged right after the body,
    # so that a blocked hub fails the test itself (not its teardown).
    guard = item.stash.get(_GUARD, None)
    if guard is not None:
        guard.monitor.reset()
    result = yield
    if guard is not None:
        failure, summary = guard.finish()
        item.add_report_section("call", "hub_block_guard", summary + "\n")
        if failure:
            pytest.fail(failure, pytrace=False)
    return result
