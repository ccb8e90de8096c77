"""The driver-version matrix: the same bench, once per release, to find where cooperation broke.

A regression in this field is a driver release that breaks gevent cooperation: psycopg 3.1.5
started to pick the blocking wait_c under gevent (#527) and 3.1.14 stopped (PR #688); it was
bisected by hand. Here every version gets its own isolated environment, built once with uv
and cached (~/.cache/gevent-probe/envs), holding only that version of the package, the
tool's gevent and what the measured process imports; the tool itself enters the measured
process through a folder that holds nothing but the `probe` package, so the tool's own
installation is never disturbed and never leaks in. Each version is then benched like any
run, and the transitions are the pairs of consecutive tested versions where a variant's
verdict changed. --bisect tests a coarse sample of a long range first, then bisects only
the intervals whose ends disagree (a change that comes and goes between two samples can
hide: the sample is at most 8 versions apart).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path

from packaging.version import InvalidVersion, Version

import probe
from probe import protocol, results, variant_loop
from probe.bench_transport import BenchTransport
from probe.environment import collect_environment
from probe.errors import ProbeError
from probe.model import MatrixResult, Transition, VersionResult
from probe.postgres import Database
from probe.settings import Settings, comma_list
from probe.variants import select

# The variants that exercise each package, when --variants is not given. psycopg-c builds
# from source for every version: ask for it by name.
DEFAULT_VARIANTS = {
    "psycopg": "psycopg-binary,psycopg-python",
    "psycopg2-binary": "psycopg2,psycopg2-green",
    "gevent": "psycopg-binary,psycopg2,psycopg2-green",
}
INDEX_ENV = ("UV_INDEX_URL", "PIP_INDEX_URL")
DEFAULT_INDEX = "https://pypi.org/simple"
BISECT_SAMPLES = 8

Progress = Callable[[int, int, str, str], None]


@dataclass(frozen=True)
class Environment:
    version: str
    python: Path | None  # None: it could not be built
    reason: str = ""


def cache_root() -> Path:
    base = os.environ.get(protocol.CACHE) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gevent-probe")
    return Path(base) / "envs"


# -- which versions --------------------------------------------------------------------------

def index_versions(package: str) -> list[Version]:
    """Every release of `package` on the index (PEP 691 JSON), oldest first, no yanked ones."""
    index = next((os.environ[k] for k in INDEX_ENV if os.environ.get(k)), DEFAULT_INDEX)
    url = f"{index.rstrip('/')}/{package}/"
    request = urllib.request.Request(url, headers={
        "Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            data = json.load(response)
    except (OSError, ValueError) as ex:
        raise ProbeError(f"cannot list the releases of {package} at {url}: {ex}") from None
    yanked = {_version_of(f.get("filename", "")) for f in data.get("files", [])
              if f.get("yanked")}
    found = set()
    for text in data.get("versions", []):
        try:
            found.add(Version(text))
        except InvalidVersion:
            continue
    return sorted(v for v in found if v not in yanked)


def _version_of(filename: str) -> Version | None:
    parts = filename.split("-")
    try:
        return Version(parts[1]) if len(parts) > 1 else None
    except InvalidVersion:
        return None


def expand(spec: str, package: str) -> list[str]:
    """A comma list as given, or LOW..HIGH: every final release in between, both included."""
    spec = spec.strip()
    if ".." not in spec:
        versions = list(comma_list(spec))
        if not versions:
            raise ProbeError("--versions: give a comma list (3.1.13,3.1.14) or LOW..HIGH")
        for v in versions:
            _parse(v)
        return sorted(dict.fromkeys(versions), key=Version)
    low_text, _, high_text = spec.partition("..")
    low, high = _parse(low_text.strip()), _parse(high_text.strip())
    if low > high:
        raise ProbeError(f"--versions {spec}: {low} is after {high}")
    within = [v for v in index_versions(package) if low <= v <= high and not v.is_prerelease]
    if not within:
        raise ProbeError(f"no release of {package} between {low} and {high} on the index")
    return [str(v) for v in within]


def _parse(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise ProbeError(f"--versions: {text!r} is not a version") from None


# -- environments ----------------------------------------------------------------------------

def requirements(package: str, version: str, variants: str) -> list[str]:
    """What the measured process needs: the package at `version`, the rest at the tool's."""
    pinned = {name: _installed(name) for name in ("gevent", "greenlet", "hdrhistogram")}
    reqs = [f"{name}=={v}" for name, v in pinned.items() if v and name != package]
    if package == "psycopg":
        reqs.append(f"psycopg[binary]=={version}")
        if "psycopg-c" in variants:
            reqs.append(f"psycopg-c=={version}")
    elif package == "psycopg2-binary":
        reqs += [f"psycopg2-binary=={version}", "psycogreen"]
    else:  # gevent: the drivers at the tool's versions
        reqs += [f"gevent=={version}", *_pins("psycopg", "psycopg-binary", "psycopg2-binary",
                                              "psycogreen")]
    return reqs


def _installed(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def _pins(*names: str) -> list[str]:
    return [f"{n}=={v}" for n in names if (v := _installed(n))]


def _uv() -> list[str]:
    try:
        import uv

        return [uv.find_uv_bin()]
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return [found]
    raise ProbeError("the matrix builds its environments with uv: pip install uv")


def environment(package: str, version: str, variants: str) -> Environment:
    """The cached environment for this version, built now if it is not there yet."""
    reqs = requirements(package, version, variants)
    key = hashlib.sha256(json.dumps([sys.version, reqs]).encode()).hexdigest()[:12]
    folder = cache_root() / f"{package}-{version}-py{sys.version_info[0]}" \
                            f"{sys.version_info[1]}-{key}"
    python = folder / "bin" / "python"
    if (folder / ".ready").is_file() and python.exists():
        return Environment(version, python)
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    uv = _uv()
    try:
        subprocess.run([*uv, "venv", "--quiet", "--python", sys.executable, str(folder)],
                       check=True, capture_output=True, text=True, timeout=300)
        # compiled once here: the measured processes start from it on every later run
        subprocess.run([*uv, "pip", "install", "--quiet", "--compile-bytecode", "--python",
                        str(python), *reqs],
                       check=True, capture_output=True, text=True, timeout=900)
    except subprocess.CalledProcessError as ex:
        shutil.rmtree(folder, ignore_errors=True)
        reason = (ex.stderr or ex.stdout or "").strip().splitlines()
        return Environment(version, None, f"cannot be installed here: "
                                          f"{reason[-1] if reason else ex}")
    except subprocess.TimeoutExpired:
        shutil.rmtree(folder, ignore_errors=True)
        return Environment(version, None, "its installation took too long")
    (folder / ".ready").write_text(json.dumps(reqs))
    return Environment(version, python)


def shim() -> Path:
    """A folder holding only a link to the `probe` package, for the measured process."""
    folder = cache_root().parent / "shim" / hashlib.sha256(
        str(Path(probe.__file__).parent).encode()).hexdigest()[:12]
    link = folder / "probe"
    if not link.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".probe-{os.getpid()}"
        tmp.symlink_to(Path(probe.__file__).parent, target_is_directory=True)
        os.replace(tmp, link)
    return folder


# -- the matrix ------------------------------------------------------------------------------

def run(settings: Settings, database: Database, run_id: str, versions: list[str],
        progress: Progress | None = None,
        sink: Callable[[MatrixResult], object] | None = None) -> MatrixResult:
    """Bench `versions` (from `expand`) of settings.package, each in its environment; `sink`
    gets the matrix so far after every version (results.json, written atomically)."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    variants = settings.variants or DEFAULT_VARIANTS[settings.package]
    chosen = select(variants, "bench")
    names = ",".join(v.name for v in chosen)
    measured: dict[str, VersionResult] = {}

    environment = collect_environment(database)

    def assemble(complete: bool) -> MatrixResult:
        tested = tuple(measured[v] for v in versions if v in measured)
        return MatrixResult(
            run_id=run_id, mode="matrix", command=settings.command_line(),
            started=started.isoformat(timespec="seconds"),
            duration_s=round(time.perf_counter() - t0, 2), complete=complete,
            package=settings.package, environment=environment, settings=settings.public(),
            versions=tested, transitions=transitions(tested))

    def measure(version: str) -> VersionResult:
        if version not in measured:
            measured[version] = _measure_version(settings, database, names, version, progress,
                                                 len(measured) + 1, len(versions))
            if sink is not None:
                sink(assemble(complete=False))
        return measured[version]

    if settings.bisect:
        _bisect(versions, measure, [v.name for v in chosen])
    else:
        for version in versions:
            measure(version)
    return assemble(complete=True)


def _measure_version(settings: Settings, database: Database, names: str, version: str,
                     progress: Progress | None, step: int, steps: int) -> VersionResult:
    if progress:
        progress(step, steps, f"{settings.package} {version}", "preparing its environment")
    env = environment(settings.package, version, names)
    if env.python is None:
        if progress:
            progress(step, steps, f"{settings.package} {version}", "cannot be installed")
        return VersionResult(version=version, unavailable=env.reason)
    transport = BenchTransport(settings, database.dsn, python=str(env.python),
                               env={"PYTHONPATH": str(shim())})

    def tell(inner: int, of: int, name: str, state: str) -> None:
        if progress:
            progress(step, steps, f"{settings.package} {version} [{inner}/{of}]: {name}", state)

    scoped = _with_variants(settings, names)
    result = variant_loop.run(scoped, database, results.new_run_id("bench"), tell,
                              transport=transport)
    skipped = "; ".join(f"{u.name}: {u.reason}" for u in result.skipped) or None
    if not result.variants and skipped:
        return VersionResult(version=version, unavailable=skipped)
    return VersionResult(version=version, variants=result.variants,
                         control_problems=result.control_problems, aborted=result.aborted)


def _with_variants(settings: Settings, names: str) -> Settings:
    return dataclasses.replace(settings, variants=names, command="bench")


def transitions(tested: tuple[VersionResult, ...]) -> tuple[Transition, ...]:
    """Between consecutive tested versions, every variant whose verdict changed."""
    found = []
    usable = [t for t in tested if t.variants]
    for before, after in itertools.pairwise(usable):
        old = {v.name: v.verdict for v in before.variants}
        for v in after.variants:
            if v.name in old and old[v.name] != v.verdict:
                found.append(Transition(variant=v.name, from_version=before.version,
                                        to_version=after.version,
                                        from_verdict=old[v.name], to_verdict=v.verdict))
    return tuple(found)


def _bisect(versions: list[str], measure: Callable[[str], VersionResult],
            names: list[str]) -> None:
    """Measure a sample of at most BISECT_SAMPLES + 1 versions, then bisect each interval
    whose ends disagree for some variant, until the change sits between neighbours."""
    stride = max(1, math.ceil((len(versions) - 1) / BISECT_SAMPLES))
    sample = sorted({*range(0, len(versions), stride), len(versions) - 1})
    for i in sample:
        measure(versions[i])
    pending = list(itertools.pairwise(sample))
    while pending:
        low, high = pending.pop()
        if high - low < 2 or _same(measure(versions[low]), measure(versions[high]), names):
            continue
        middle = (low + high) // 2
        measure(versions[middle])
        pending += [(low, middle), (middle, high)]


def _same(a: VersionResult, b: VersionResult, names: list[str]) -> bool:
    if not a.variants or not b.variants:
        return False
    va = {v.name: v.verdict for v in a.variants}
    vb = {v.name: v.verdict for v in b.variants}
    return all(va.get(n) == vb.get(n) for n in names)
