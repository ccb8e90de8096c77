"""DSN handling: check that a server answers, and never let a password escape.

psycopg2 parses DSNs here because it parses both key=value strings and URIs with libpq's own
rules, and the tool process must not import psycopg (its implementation is chosen per
measured process with PSYCOPG_IMPL).
"""

from __future__ import annotations

import re

from probe.errors import ProbeError

_URI_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(dsn: str) -> str:
    """The DSN with any password replaced by ***; safe to print and store."""
    text = _URI_PASSWORD.sub(r"\1***\3", dsn)
    return _KV_PASSWORD.sub(r"\1***", text)


def password_of(dsn: str) -> str | None:
    try:
        from psycopg2.extensions import parse_dsn

        return parse_dsn(dsn).get("password") or None
    except Exception:
        return None


def scrub_in_measured(text: str, dsn: str) -> str:
    """As scrub, in a measured process, which must import no driver (the agent): the password
    as the DSN spells it (key=value or URI), found by pattern, not by libpq's parser."""
    found = [m.group(2) for m in (_URI_PASSWORD.search(dsn), _KV_PASSWORD.search(dsn)) if m]
    for password in found:
        for spelled in {password, password.strip("'")}:
            if spelled:
                text = text.replace(spelled, "***")
    return redact(text)


def scrub(text: str, dsn: str | None) -> str:
    """Remove the DSN's password from any message (driver errors may quote the DSN)."""
    if not dsn:
        return text
    password = password_of(dsn)
    if password:
        text = text.replace(password, "***")
    return redact(text)


def as_uri(dsn: str) -> str:
    """The same connection as a postgresql:// URI (what DATABASE_URL holds by convention, and
    what SQLAlchemy, Django's dj-database-url and libpq all read); a URI is kept as it is."""
    if dsn.startswith(("postgres://", "postgresql://")):
        return dsn
    from urllib.parse import quote, urlencode

    from psycopg2.extensions import parse_dsn

    params = dict(parse_dsn(dsn))
    user = quote(params.pop("user", ""), safe="")
    password = params.pop("password", None)
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    host, port = params.pop("host", ""), params.pop("port", "")
    dbname = quote(params.pop("dbname", ""), safe="")
    where = f"{host}:{port}" if port else host
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{auth}{where}/{dbname}{query}"


def describe(dsn: str) -> str:
    """host:port/dbname as user, for humans; no password."""
    try:
        from psycopg2.extensions import parse_dsn

        params = parse_dsn(dsn)
    except Exception as ex:
        raise ProbeError(f"invalid DSN {redact(dsn)!r}: {str(ex).strip()}") from None
    host = params.get("host", "local socket")
    port = params.get("port", "5432")
    return f"{host}:{port}/{params.get('dbname', params.get('user', ''))}"


def check(dsn: str, timeout_s: int = 5) -> str:
    """Connect once and return the server version; ProbeError with one clean line otherwise."""
    describe(dsn)  # syntax first, for a clearer message
    import psycopg2

    try:
        conn = psycopg2.connect(dsn, connect_timeout=timeout_s)
    except psycopg2.Error as ex:
        first = scrub(str(ex).strip(), dsn).splitlines()[0] if str(ex).strip() else repr(ex)
        raise ProbeError(f"cannot connect to {describe(dsn)}: {first}") from None
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            return str(cur.fetchone()[0])
    finally:
        conn.close()
