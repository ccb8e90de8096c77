"""The slice tracer's bookkeeping, on a real hub (no switches needed)."""

from probe.slices import SliceTracer


def test_a_loop_sampled_at_many_lines_outranks_where_unsampled_runs_switched_out():
    # A computing hub gives the watchdog the GIL late: some held runs go unsampled, and all
    # of those name the one line where they switched out. The sampled loop is the culprit.
    tracer = SliceTracer(threshold_s=0.01)
    for line in (10, 11, 12):
        frame = ("/app/views.py", line, "compute")
        tracer._count_culprit(frame, (frame,), sampled=True)
    for _ in range(5):
        tracer._count_culprit(("/v/psycopg/waiting.py", 477, "wait_poll"), (), sampled=False)
    first, second = tracer.culprits()
    assert "in compute" in first.frame and first.count == 3 and first.sampled
    assert "in wait_poll" in second.frame and second.count == 5 and not second.sampled
