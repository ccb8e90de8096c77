"""The fix a verdict carries names the frame that held the hub, sampled before guessed."""

import dataclasses

from probe import fixes
from probe.measurement import Culprit
from tests.factories import held, measurement, slices

WAIT = 'File "/v/psycopg/waiting.py", line 477, in wait_poll `poll.poll(t)`'
LOOP = 'File "/app/views.py", line 12, in compute `total += i`'


def test_a_sampled_frame_is_named_before_where_an_unsampled_run_yielded():
    unsampled = dataclasses.replace(held(16.0, "computing"), frames=(), yielded_at=WAIT)
    m = measurement(slices=slices(computing=3, longest=(unsampled, held(15.0, "computing", LOOP)),
                                  culprits=(Culprit(WAIT, 5, (), sampled=False),)))
    assert LOOP in fixes.computing_fix(m) and WAIT not in fixes.computing_fix(m)


def test_with_nothing_sampled_the_yield_point_is_a_hint_and_says_so():
    unsampled = dataclasses.replace(held(16.0, "computing"), frames=(), yielded_at=WAIT)
    m = measurement(slices=slices(computing=1, longest=(unsampled,),
                                  culprits=(Culprit(WAIT, 1, (), sampled=False),)))
    assert f"not sampled while it ran; it yielded next at {WAIT}" in fixes.computing_fix(m)


def test_the_frame_sampled_most_often_beats_one_late_sample_of_the_longest_run():
    send = 'File "/v/psycopg/cursor.py", line 300, in _send_query_prepared `send()`'
    late = held(17.0, "computing", send)  # sampled after the loop, in the query that followed
    m = measurement(slices=slices(computing=40, longest=(late,),
                                  culprits=(Culprit(LOOP, 24, ()), Culprit(send, 18, ()))))
    assert LOOP in fixes.computing_fix(m) and send not in fixes.computing_fix(m)
