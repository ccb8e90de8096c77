"""gevent-probe: does your PostgreSQL driver cooperate with gevent?

Importing the package imports neither gevent nor any driver: patching happens only in the
measured processes' entry points (probe.worker, the sample app).
"""

import importlib.metadata as _distribution

try:  # one source: the version in pyproject.toml, as the installed distribution carries it
    __version__ = _distribution.version("gevent-probe")
except _distribution.PackageNotFoundError:  # a checkout on sys.path without an install
    __version__ = "0+unknown"
