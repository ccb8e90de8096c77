import pytest

from probe import variants
from probe.errors import ProbeError


def test_all_bench_variants_in_order():
    names = [v.name for v in variants.select(None, "bench")]
    assert names == ["psycopg2", "psycopg2-green", "psycopg-binary", "psycopg-c",
                     "psycopg-python", "wait_c", "import-before-patch",
                     "psycopg-python-first", "partial-block", "compute", "spin-wait"]


def test_select_by_name_keeps_order_and_drops_duplicates():
    chosen = variants.select("wait_c, psycopg2,wait_c", "bench")
    assert [v.name for v in chosen] == ["wait_c", "psycopg2"]


def test_unknown_variant_names_the_known_ones():
    with pytest.raises(ProbeError, match="unknown variant 'nope'; known: psycopg2"):
        variants.select("nope", "bench")


def test_preload_exists_only_in_system_mode():
    with pytest.raises(ProbeError, match="only exists in mode"):
        variants.select("preload", "bench")
    assert variants.select("preload", "run")[0].preload


def test_environment_carries_impl_and_wait_func():
    env = variants.BY_NAME["wait_c"].environment()
    assert env == {"PSYCOPG_WAIT_FUNC": "wait_c", "PSYCOPG_IMPL": "binary"}


def test_with_the_users_own_app_preload_is_a_question_not_a_control():
    preload = variants.BY_NAME["preload"]
    assert preload.is_control() and not preload.is_control(own_app=True)
    assert variants.BY_NAME["wait_c"].is_control(own_app=True)


def test_a_deployed_apps_driver_names_its_variant():
    from probe.measurement import AppDriver

    def named(module: str, impl: str, wait: str) -> str:
        return variants.matching(AppDriver(module, "1", impl, wait, "with the app")).name

    assert named("psycopg", "binary", "wait_poll") == "psycopg-binary"
    assert named("psycopg", "c", "wait_poll") == "psycopg-c"
    assert named("psycopg", "binary", "wait_c") == "wait_c"
    assert named("psycopg2", "c", "none (libpq blocks)") == "psycopg2"
    assert named("psycopg2", "c", "psycogreen.gevent.wait_callback") == "psycopg2-green"
