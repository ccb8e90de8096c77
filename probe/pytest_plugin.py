"""A guard in your own test suite: fail a test that blocked the gevent hub for too long.

    def test_concurrent_queries(hub_block_guard):
        hub_block_guard.max_ms = 20          # default 10
        ...

    @pytest.mark.hub_block_guard(max_ms=50)
    def test_slow_but_cooperative(hub_block_guard): ...

The fixture runs probe.monitor's heartbeat greenlet and watchdog thread; when the test body
ends, a stall of the hub during the body (not its fixtures' setup: they are not the code under
test) longer than max_ms fails the test with the measured length and the
frame that held the hub (blockbuster does this for asyncio; nothing did it for gevent). Your
test process must be patched by gevent (monkey.patch_all() at the top of conftest.py), as
your app is in production: the guard does not patch anything itself. This module imports
neither gevent nor the probe's measuring code until a test asks for the fixture, so having
gevent-probe installed costs other test suites nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

DEFAULT_MAX_MS = 10.0
# The watchdog samples stacks of stalls from this length on, whatever max_ms is, so that the
# frame of the longest stall is known even when max_ms is changed during the test.
SAMPLE_FROM_MS = 2.0


class HubBlockGuard:
    def __init__(self, max_ms: float) -> None:
        from probe.monitor import LoopMonitor

        self.monitor = LoopMonitor(threshold_s=min(max_ms, SAMPLE_FROM_MS) / 1000).start()
        self.max_ms = max_ms

    @property
    def max_ms(self) -> float:
        return self._max_ms

    @max_ms.setter
    def max_ms(self, value: float) -> None:
        # The watchdog records stalls from its threshold on, fixed when it starts: a lower
        # limit set later would pass stalls it never recorded.
        floor = self.monitor.threshold_s * 1000
        if value < floor:
            raise ValueError(f"hub_block_guard.max_ms below {floor:g} ms: set it with "
                             f"@pytest.mark.hub_block_guard(max_ms={value:g}) instead")
        self._max_ms = value

    def finish(self) -> str | None:
        """Stop watching; the failure message if the hub stalled longer than max_ms."""
        from probe.frames import caller_line, culprit_line

        self.monitor.settle()
        self.monitor.stop()
        late, stack = self.monitor.worst
        if late * 1000 <= self.max_ms:
            return None
        where = culprit_line(stack) if stack else None
        caller = caller_line(stack) if stack else None
        lines = [f"the gevent hub was blocked for {late * 1000:.1f} ms (longest stall; "
                 f"allowed {self.max_ms:g} ms)"]
        if where:
            lines.append(f"held by {where}" + (f"\ncalled from {caller}"
                                                if caller and caller != where else ""))
        else:
            lines.append("the frame that held it was not sampled")
        if stack:
            lines += ["", "stack of the hub thread during that stall:", *stack]
        return "\n".join(lines)


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "hub_block_guard(max_ms=10): the longest gevent hub "
                            "stall a test using the hub_block_guard fixture may cause")


@pytest.fixture
def hub_block_guard(request: Any) -> Iterator[HubBlockGuard]:
    marker = request.node.get_closest_marker("hub_block_guard")
    max_ms = float(marker.kwargs.get("max_ms", DEFAULT_MAX_MS)) if marker else DEFAULT_MAX_MS
    guard = HubBlockGuard(max_ms)
    request.node.stash[_GUARD] = guard
    yield guard
    guard.monitor.stop()


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
        failure = guard.finish()
        if failure:
            pytest.fail(failure, pytrace=False)
    return result
