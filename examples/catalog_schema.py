"""The products table the example apps read: created and filled once, whoever comes first."""

from __future__ import annotations

ROWS = 1000


def ensure_schema(conn) -> None:
    """Idempotent and safe when several workers race (an advisory lock orders them)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(727)")
        conn.execute("CREATE TABLE IF NOT EXISTS products (id int PRIMARY KEY, name text, "
                     "category int, price numeric(10, 2), stock int, description text)")
        conn.execute(
            "INSERT INTO products SELECT i, 'product ' || i, i %% 10, (i * 7 %% 1000) / 10.0,"
            " i * 13 %% 100, repeat('a fine product to buy, ', 3) FROM "
            "generate_series(1, %s) AS i ON CONFLICT (id) DO NOTHING", (ROWS,))
