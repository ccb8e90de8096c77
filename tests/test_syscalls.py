"""System calls that keep the GIL: the same answers as `os`, and a timer that fires once."""

import threading
import time

from probe import syscalls
from probe.alarm import Alarm


def test_a_reader_reads_what_os_reads_again_and_again(tmp_path):
    assert syscalls.available
    reader = syscalls.Reader("/proc/thread-self/schedstat", 128)
    first = reader.read()
    assert len(first.split()) == 3 and first == first.strip() + b"\n"
    assert int(reader.read().split()[0]) >= int(first.split()[0])  # read anew each time
    reader.close()
    path = tmp_path / "f"
    path.write_bytes(b"x" * 300)
    short = syscalls.Reader(str(path), 256)
    assert short.read() == b"x" * 256  # never more than its buffer
    short.close()
    assert syscalls.open_or_none(str(tmp_path / "missing")) is None


def test_the_alarm_fires_only_when_not_pushed_back_in_time():
    alarm = Alarm(poll_s=0.005)
    assert alarm.kernel
    fired: list[float] = []

    def watchdog() -> None:
        if alarm.wait():
            fired.append(time.perf_counter())

    start = time.perf_counter()
    alarm.arm(0.1)
    thread = threading.Thread(target=watchdog)
    thread.start()
    # Pushed back for 100 ms, it must not fire meanwhile (each arming gives it 100 ms: only a
    # 10 ms sleep late by 90 ms would let it, not a loaded machine's few ms).
    for _ in range(10):
        time.sleep(0.01)
        alarm.arm(0.1)
    pushed_until = time.perf_counter()
    thread.join(2)
    assert fired and fired[0] - start >= pushed_until - start - 0.001
    alarm.close()
    assert not alarm.kernel
