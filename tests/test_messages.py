"""The messages of measured processes through the one JSON mapping."""

import json

from probe.measurement import Deadlock
from probe.messages import WorkerJob, WorkerReply
from probe.model import from_dict, to_dict


def test_a_bench_workers_job_and_reply_round_trip_and_old_replies_still_read():
    job = WorkerJob("psycopg-binary", dsn="postgresql://u@127.0.0.1/db", queries=None,
                    duration=2.0, connections="shared")
    assert from_dict(WorkerJob, json.loads(json.dumps(to_dict(job)))) == job
    reply = WorkerReply(deadlock=Deadlock(after_s=5.0, how="held", hub_stack=("a",),
                                          greenlets=(("b", "c"),)))
    assert from_dict(WorkerReply, json.loads(json.dumps(to_dict(reply)))) == reply
    # A worker of a release before these types (the matrix's environments) sent one key.
    assert from_dict(WorkerReply, {"unavailable": "no module"}).unavailable == "no module"
