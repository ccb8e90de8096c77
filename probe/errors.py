"""Errors the CLI turns into one line on stderr and exit code 2."""


class ProbeError(Exception):
    """A usage or infrastructure problem: bad input, missing binaries, unreachable server."""
