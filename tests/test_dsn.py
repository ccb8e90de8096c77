import pytest

from probe import dsn
from probe.errors import ProbeError


@pytest.mark.parametrize("text", [
    "host=db user=app password=hunter2 dbname=x",
    "host=db user=app password='hun ter2' dbname=x",
    "postgresql://app:hunter2@db:5432/x",
    "postgres://app:hunter2@db/x?sslmode=disable",
])
def test_redact_hides_the_password(text):
    redacted = dsn.redact(text)
    assert "hunter2" not in redacted and "hun ter2" not in redacted
    assert "***" in redacted


def test_scrub_removes_the_password_wherever_a_message_quotes_it():
    secret = "host=db password=s3cr3t user=app"
    assert "s3cr3t" not in dsn.scrub("failed for s3cr3t (host=db password=s3cr3t)", secret)


def test_describe_has_no_password_and_rejects_garbage():
    assert dsn.describe("postgresql://app:pw@db:6543/orders") == "db:6543/orders"
    with pytest.raises(ProbeError, match="invalid DSN"):
        dsn.describe("this is = not a dsn =")


def test_check_reports_an_unreachable_server_in_one_line():
    with pytest.raises(ProbeError) as info:
        dsn.check("postgresql://app:topsecret@127.0.0.1:1/x", timeout_s=2)
    message = str(info.value)
    assert "\n" not in message and "topsecret" not in message
    assert message.startswith("cannot connect to 127.0.0.1:1/x")


def test_a_measured_process_scrubs_the_password_without_importing_a_driver():
    import sys

    from probe.dsn import scrub_in_measured

    had = "psycopg2" in sys.modules
    said = 'could not connect: password "s3cr3t" for postgresql://app:s3cr3t@db/x refused'
    assert "s3cr3t" not in scrub_in_measured(said, "postgresql://app:s3cr3t@db/x")
    assert "hunter2" not in scrub_in_measured("hunter2!", "host=db password='hunter2' user=a")
    assert ("psycopg2" in sys.modules) == had
