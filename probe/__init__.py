"""gevent-probe: does your PostgreSQL driver cooperate with gevent?

Importing the package imports neither gevent nor any driver: patching happens only in the
measured processes' entry points (probe.worker, the sample app).
"""

__version__ = "0.1.0"
