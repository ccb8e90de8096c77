"""A slower psycopg build, for benchmarks/gate_soak.py only: every query waits
GEVENT_PROBE_SOAK_SLOWER_MS more, cooperatively (gevent.sleep), as a release that got slower
without blocking the hub would. Loaded through PYTHONPATH by the measured processes."""

import importlib.abc
import importlib.util
import os
import sys

EXTRA_S = float(os.environ.get("GEVENT_PROBE_SOAK_SLOWER_MS") or 0) / 1000


class _SlowerOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "psycopg" or not EXTRA_S:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_then_slow_down(module):
            exec_module(module)
            execute = module.Cursor.execute

            def slower_execute(self, *args, **kwargs):
                import gevent

                gevent.sleep(EXTRA_S)
                return execute(self, *args, **kwargs)

            module.Cursor.execute = slower_execute

        spec.loader.exec_module = exec_then_slow_down
        return spec


sys.meta_path.insert(0, _SlowerOnImport())
