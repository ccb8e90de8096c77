"""What the slice tracer adds to one greenlet switch, in a tight loop (no app, no I/O).

    .venv/bin/python benchmarks/switch_cost.py [--switches 200000]

Two greenlets switch back and forth; the loop is timed bare, with a Python trace function
that does nothing (what greenlet costs to call any Python tracer), and with the probe's
SliceTracer, its hot path in C and in Python (probe.switch_clock), in turn, several rounds.
Printed: ns per switch, the best round of each. In an app the same work costs several times
more (cold caches between switches): benchmarks/overhead.py prices that.
"""

from __future__ import annotations

import argparse
import time

import greenlet

from probe.slices import SliceTracer


def per_switch_ns(switches: int) -> float:
    main = greenlet.getcurrent()

    def other() -> None:
        while True:
            main.switch()

    peer = greenlet.greenlet(other)
    start = time.perf_counter()
    for _ in range(switches // 2):
        peer.switch()
    return (time.perf_counter() - start) / switches * 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--switches", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    found: dict[str, list[float]] = {"bare": [], "noop": [], "C": [], "Python": []}
    # In turn, round after round: this VM's speed drifts by more than the tracer costs.
    for _ in range(args.rounds):
        found["bare"].append(per_switch_ns(args.switches))
        greenlet.settrace(lambda event, targets: None)
        found["noop"].append(per_switch_ns(args.switches))
        greenlet.settrace(None)
        for implementation in ("C", "Python"):
            tracer = SliceTracer(threshold_s=0.01, compiled=implementation == "C").start()
            found[implementation].append(per_switch_ns(args.switches))
            tracer.stop()
    bare, noop, c, python = (min(found[k]) for k in ("bare", "noop", "C", "Python"))
    print(f"best of {args.rounds} rounds: bare switch {bare:.0f} ns; + a Python tracer that "
          f"does nothing {noop - bare:.0f} ns; + the slice tracer {c - bare:.0f} ns (its hot "
          f"path in C), {python - bare:.0f} ns (in Python)")


if __name__ == "__main__":
    main()
