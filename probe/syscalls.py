"""System calls that keep the GIL, for the two threads of the monitor (Linux).

Why: CPython hands the GIL over around every system call made through `os` or a ctypes
CDLL, so that other threads can run meanwhile. For a call that never waits (reading a small
/proc file, arming a kernel timer) that is pure cost when another thread wants the GIL: the
watchdog thread, sampling the hub, made ~14 such calls (Python's open() of a /proc file alone
is seven), each letting the hub take the GIL back and the watchdog wait for it again; and the
slice tracer re-arms the watchdog's alarm hundreds of times a second from the hub. Called
through ctypes.PyDLL, the same calls hold the GIL throughout: one hand-over per wake of the
watchdog instead of a convoy. Measured with benchmarks/overhead.py (README).

Where libc cannot be loaded, `available` is False and callers fall back to `os`.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> Any:
    try:
        libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held during calls
        libc.pread.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long)
        libc.pread.restype = ctypes.c_ssize_t
        libc.timerfd_settime.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                                         ctypes.c_void_p)
        libc.timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
        return libc
    except (OSError, AttributeError):  # not Linux, or no libc symbols in this process
        return None


_LIBC = _libc()
available = _LIBC is not None


class Reader:
    """pread() of a small file kept open (a /proc file: its content is made at each read).
    Opening raises OSError; a /proc/thread-self file is bound to the thread that opens it."""

    def __init__(self, path: str, size: int = 256) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self._buffer = ctypes.create_string_buffer(size)
        self._size = size

    def read(self) -> bytes:
        if _LIBC is None:
            return os.pread(self.fd, self._size, 0)
        n = _LIBC.pread(self.fd, self._buffer, self._size, 0)
        if n < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return ctypes.string_at(self._buffer, n)

    def close(self) -> None:
        """Once: the fd number may be reused after."""
        os.close(self.fd)


def open_or_none(path: str, size: int = 256) -> Reader | None:
    try:
        return Reader(path, size)
    except OSError:  # not Linux (macOS), or a container's restricted /proc
        return None


def close(reader: Reader | None) -> None:
    if reader is not None:
        reader.close()


class Timer:
    """timerfd_create/timerfd_settime; `settime` keeps the GIL (see the module's docstring)."""

    CLOCK_MONOTONIC = 1
    TFD_CLOEXEC = 0o2000000

    def __init__(self) -> None:
        if _LIBC is None:
            raise OSError("no libc to call timerfd_create")
        fd = _LIBC.timerfd_create(self.CLOCK_MONOTONIC, self.TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        self.fd: int = fd
        self._spec = _Itimerspec()  # reused: armed up to hundreds of times a second
        self._spec_ref = ctypes.byref(self._spec)

    def settime(self, after: float) -> None:
        """Fire once, `after` seconds from now (0 would disarm it: callers never pass it).
        Two threads arm it: each call sets the whole spec, so that a call interleaved with
        the other thread's can leave a wrong delay for one arming, never for the next."""
        spec = self._spec
        spec.it_value.tv_sec, spec.it_value.tv_nsec = int(after), int(after % 1 * 1e9)
        _LIBC.timerfd_settime(self.fd, 0, self._spec_ref, None)
