"""Errors the CLI turns into one line on stderr and exit code 2, and the exit codes."""

# The one list of exit codes (the CLI exits, the gate decides which):
EXIT_OK = 0  # every check passed
EXIT_FAILED = 1  # a check failed: a verdict in --fail-on, a latency limit, a regression
EXIT_USAGE = 2  # bad input, an infrastructure problem, or controls that were not flagged
EXIT_INTERRUPTED = 130  # Ctrl-C, or SIGTERM


class ProbeError(Exception):
    """A usage or infrastructure problem: bad input, missing binaries, unreachable server."""


class RunCannotGoOn(ProbeError):
    """Every variant after this one would fail the same way (no load workers came): the run
    stops, keeping what it measured, and says why (RunResult.aborted)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) after some variants were measured: what was kept, and where."""
