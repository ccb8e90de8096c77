# gevent-probe with PostgreSQL server binaries and every driver variant.
#   docker build -t gevent-probe .
#   docker run --rm gevent-probe bench          # embedded PostgreSQL, all variants
#   docker run --rm -e GEVENT_PROBE_DSN=... gevent-probe bench
# (Not built in this project's CI: its machines have no Docker engine.)
FROM python:3.11-slim-bookworm

# postgresql: initdb/postgres for the embedded cluster; gcc + libpq-dev build psycopg[c].
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql gcc libpq-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/gevent-probe
COPY pyproject.toml constraints.txt README.md ./
COPY probe ./probe
COPY apps ./apps
COPY locustfiles ./locustfiles
RUN pip install --no-cache-dir -c constraints.txt '.[c]'

# The embedded cluster runs as the image's `postgres` user; reports go to /reports.
WORKDIR /reports
ENTRYPOINT ["gevent-probe"]
CMD ["bench"]
