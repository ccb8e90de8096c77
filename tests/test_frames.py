from types import SimpleNamespace

from probe.frames import caller_line, culprit_line, format_stack, merge_culprits, walk
from probe.measurement import Culprit
from probe.messages import SliceReport


def test_the_culprit_is_the_innermost_frame_outside_gevent():
    stack = ('  File "app.py", line 3, in handler', "    query()",
             '  File "db.py", line 9, in query', "    cur.execute(sql)",
             '  File "/x/gevent/hub.py", line 1, in switch', "    switch()")
    assert culprit_line(stack) == 'File "db.py", line 9, in query `cur.execute(sql)`'
    assert culprit_line(()) is None


def test_culprits_of_several_workers_add_up():
    def report(*culprits):
        return SliceReport(threshold_ms=10, watched_s=1, count=0, busy_s=0, cpu_s=0, runq_s=0,
                           slices_hdr="", culprits=culprits)

    merged = merge_culprits([report(Culprit("a", 2, ("s",))),
                             report(Culprit("b", 1, ()), Culprit("a", 3, ()))])
    assert [(c.frame, c.count) for c in merged] == [("a", 5), ("b", 1)]
    # where unsampled runs switched out comes after anything sampled, however many
    guessed = merge_culprits([report(Culprit("wait", 9, (), sampled=False), Culprit("b", 1, ()))])
    assert [(c.frame, c.sampled) for c in guessed] == [("b", True), ("wait", False)]


def test_the_caller_is_the_innermost_frame_of_the_users_own_code():
    stack = ('  File "/app/views.py", line 3, in handler', "    db.query()",
             '  File "/v/lib/python3.11/site-packages/psycopg2/__init__.py", line 9, in connect',
             "    _connect(dsn)")
    assert caller_line(stack) == 'File "/app/views.py", line 3, in handler `db.query()`'


def test_a_frame_without_a_line_number_is_walked_and_formatted():
    # Python gives f_lineno None while a frame runs code without a line (pytest's rewritten
    # asserts): a sampled stack caught there once broke the report.
    code = SimpleNamespace(co_filename=__file__, co_name="rewritten")
    outer = SimpleNamespace(f_code=SimpleNamespace(co_filename=__file__, co_name="test"),
                            f_lineno=1, f_back=None)
    stack = walk(SimpleNamespace(f_code=code, f_lineno=None, f_back=outer))
    assert stack == ((__file__, 1, "test"), (__file__, 0, "rewritten"))
    assert format_stack(stack)[-1] == f'  File "{__file__}", line 0, in rewritten'
