"""The driver variants gevent-probe measures, and the controls that must always be flagged.

A variant is a recipe a measured process follows: which driver, which psycopg implementation
(`PSYCOPG_IMPL`), whether the driver is imported before `monkey.patch_all()`, extra
environment, and for controls the verdict they must get. Controls prove the detectors work:
if a control is not flagged, the run cannot be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from probe.errors import ProbeError
from probe.measurement import AppDriver
from probe.model import Verdict
from probe.settings import comma_list


@dataclass(frozen=True)
class Variant:
    name: str
    driver: str  # "psycopg" or "psycopg2"
    description: str
    impl: str | None = None  # PSYCOPG_IMPL for psycopg variants
    env: tuple[tuple[str, str], ...] = ()
    import_before_patch: bool = False
    psycogreen: bool = False
    wait_hook: str | None = None  # "spin" or "partial": a wait function the control installs
    compute: bool = False  # every request (bench: every query) computes without yielding
    imports_pool: bool = False  # the sample app imports psycopg_pool at module level too
    preload: bool = False  # system mode only: gunicorn --preload, app imports the driver
    control: bool = False
    expected: Verdict = "healthy"
    install_hint: str = ""
    modes: tuple[str, ...] = field(default=("bench", "run"))

    def environment(self) -> dict[str, str]:
        env = dict(self.env)
        if self.impl:
            env["PSYCOPG_IMPL"] = self.impl
        return env

    def is_control(self, own_app: bool = False) -> bool:
        """With the user's own app, `preload` asks the user's real question ("is my app safe
        under --preload?"): its answer depends on the app, so it proves nothing about us."""
        return self.control and not (own_app and self.preload)


_PSYCOPG2_HINT = "pip install psycopg2-binary (or psycopg2, built against your libpq)"
_BINARY_HINT = "pip install 'psycopg[binary]'"

VARIANTS: tuple[Variant, ...] = (
    Variant(
        name="psycopg2",
        driver="psycopg2",
        description="psycopg2, no wait callback: libpq blocks the whole process",
        expected="hub-blocking",
        install_hint=_PSYCOPG2_HINT,
    ),
    Variant(
        name="psycopg2-green",
        driver="psycopg2",
        description="psycopg2 + psycogreen.gevent.patch_psycopg()",
        psycogreen=True,
        install_hint="pip install psycogreen psycopg2-binary",
    ),
    Variant(
        name="psycopg-binary",
        driver="psycopg",
        impl="binary",
        description="psycopg 3, binary wheel (bundled libpq), gevent patched first",
        install_hint=_BINARY_HINT,
    ),
    Variant(
        name="psycopg-c",
        driver="psycopg",
        impl="c",
        description="psycopg 3, C extension built against the system libpq",
        install_hint="pip install 'psycopg[c]' (needs gcc and libpq-dev; psycopg-c must match "
        "psycopg's version exactly)",
    ),
    Variant(
        name="psycopg-python",
        driver="psycopg",
        impl="python",
        description="psycopg 3, pure-Python implementation over the system libpq",
        install_hint="install the system libpq (e.g. apt-get install libpq5)",
    ),
    Variant(
        name="wait_c",
        driver="psycopg",
        impl="binary",
        env=(("PSYCOPG_WAIT_FUNC", "wait_c"),),
        description="control: PSYCOPG_WAIT_FUNC=wait_c forces psycopg to wait in C",
        control=True,
        expected="hub-blocking",
        install_hint=_BINARY_HINT,
    ),
    Variant(
        name="import-before-patch",
        driver="psycopg",
        impl="binary",
        import_before_patch=True,
        description="control: psycopg imported before monkey.patch_all(), so it picks wait_c",
        control=True,
        expected="hub-blocking",
        install_hint=_BINARY_HINT,
        modes=("bench",),  # under gunicorn the same trap is the `preload` variant
    ),
    Variant(
        name="psycopg-python-first",
        driver="psycopg",
        impl="python",
        import_before_patch=True,
        description="psycopg 3 pure Python imported before monkey.patch_all(): its waits "
        "still yield (wait_poll) but each connection's lock is an OS lock (with "
        "--connections shared: a deadlock)",
        install_hint="install the system libpq (e.g. apt-get install libpq5)",
        modes=("bench",),  # under gunicorn, importing before patching is what --preload does
    ),
    Variant(
        name="partial-block",
        driver="psycopg",
        impl="binary",
        wait_hook="partial",
        description="control: cooperative waits, but every query also blocks the hub for "
        "--partial-block-ms (default 2 ms)",
        control=True,
        expected="hub-blocking",
        install_hint=_BINARY_HINT,
    ),
    Variant(
        name="compute",
        driver="psycopg",
        impl="binary",
        compute=True,
        description="control: a cooperative driver, but every request first computes "
        "--compute-ms (default 15) on the CPU without yielding, as a large JSON would",
        control=True,
        expected="computing",
        install_hint=_BINARY_HINT,
    ),
    Variant(
        name="spin-wait",
        driver="psycopg",
        impl="binary",
        wait_hook="spin",
        description="control: a wait function that polls with zero timeout and yields (burns CPU)",
        control=True,
        expected="busy-wait",
        install_hint=_BINARY_HINT,
    ),
    Variant(
        name="preload-pool",
        driver="psycopg",
        impl="binary",
        preload=True,
        import_before_patch=True,
        imports_pool=True,
        description="gunicorn --preload with an app that imports psycopg and psycopg_pool "
        "at module level, in the master: wait_c, and the pool's sleep bound to the OS's",
        install_hint=_BINARY_HINT,
        expected="hub-blocking",
        modes=("run",),
    ),
    Variant(
        name="preload",
        driver="psycopg",
        impl="binary",
        preload=True,
        import_before_patch=True,
        description="control: gunicorn --preload with an app that imports psycopg at module "
        "level (with --app: your app under --preload)",
        control=True,
        expected="hub-blocking",
        install_hint=_BINARY_HINT,
        modes=("run",),
    ),
)

BY_NAME = {v.name: v for v in VARIANTS}


def for_mode(mode: str) -> tuple[Variant, ...]:
    return tuple(v for v in VARIANTS if mode in v.modes)


def select(names: str | None, mode: str) -> tuple[Variant, ...]:
    """Variants named in a comma-separated list (all of the mode's when None or 'all')."""
    if names is None or names.strip() in ("", "all"):
        return for_mode(mode)
    chosen = []
    for name in comma_list(names):
        variant = BY_NAME.get(name)
        if variant is None:
            known = ", ".join(v.name for v in for_mode(mode))
            raise ProbeError(f"unknown variant {name!r}; known: {known}")
        if mode not in variant.modes:
            raise ProbeError(f"variant {name!r} only exists in mode(s) {', '.join(variant.modes)}")
        if variant not in chosen:
            chosen.append(variant)
    if not chosen:
        raise ProbeError("no variant selected")
    return tuple(chosen)


def matching(driver: AppDriver) -> Variant:
    """The variant a deployed app's driver is (run --target, without GEVENT_PROBE_VARIANT)."""
    if driver.module == "psycopg2":
        return BY_NAME["psycopg2-green" if "psycogreen" in driver.wait_function else "psycopg2"]
    if driver.wait_function == "wait_c":
        return BY_NAME["wait_c"]
    return BY_NAME.get(f"psycopg-{driver.impl}", BY_NAME["psycopg-binary"])
