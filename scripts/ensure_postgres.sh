#!/usr/bin/env bash
# Make sure a local PostgreSQL serves the search tests (idempotent; quiet when all is in place):
#   installs Debian's postgresql if missing, creates and starts a cluster listening on 127.0.0.1:5432,
#   and creates role `sanas` (password `sanas`, allowed to create databases) and database `sanas_test`.
# The tests read SANAS_TEST_POSTGRES_URL (default postgresql+psycopg2://sanas:sanas@127.0.0.1:5432/sanas_test) for
# the server and role only: each test session creates its own empty database (sanas_test_p<pid>_<random>) and
# drops it at the end, so every run walks a new user's first-day path and parallel runs never share one.
# `sanas_test` itself is for benchmarks/controller.py.
set -euo pipefail
PORT="${SANAS_PG_PORT:-5432}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "ensure_postgres: need root (or sudo) to set up PostgreSQL" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

if ! command -v pg_ctlcluster >/dev/null || ! command -v pg_lsclusters >/dev/null; then
  echo "installing PostgreSQL (apt-get install postgresql)"
  $sudo apt-get install -y -q postgresql >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q postgresql >/dev/null
  }
fi

# Newest installed server version (a fresh install may not have created a cluster, e.g. in containers).
version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
[ -n "$version" ] || { echo "ensure_postgres: no PostgreSQL server under /usr/lib/postgresql" >&2; exit 1; }
cluster="$(pg_lsclusters -h | awk -v v="$version" '$1 == v {print $2; exit}')"
if [ -z "$cluster" ]; then
  cluster=main
  echo "creating PostgreSQL $version cluster '$cluster' on port $PORT"
  $sudo pg_createcluster "$version" "$cluster" --port "$PORT" >/dev/null
fi
status="$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c {print $4}')"
cluster_port="$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c {print $3}')"
if [ "$cluster_port" != "$PORT" ]; then
  echo "ensure_postgres: cluster $version/$cluster listens on port $cluster_port, expected $PORT" \
       "(set SANAS_PG_PORT and SANAS_TEST_POSTGRES_URL to use it)" >&2
  exit 1
fi
if [ "$status" != "online" ]; then
  # Containers often lack the runtime socket directory that a booted system would create.
  $sudo install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  $sudo pg_ctlcluster "$version" "$cluster" start
fi

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    if command -v runuser >/dev/null; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
  else
    sudo -u postgres "$@"
  fi
}
psql_q() { as_postgres psql -p "$PORT" -v ON_ERROR_STOP=1 -tAq "$@"; }

for _ in $(seq 1 30); do psql_q -c "select 1" >/dev/null 2>&1 && break; sleep 1; done
psql_q -c "select 1" >/dev/null || { echo "ensure_postgres: server not answering on port $PORT" >&2; exit 1; }

if [ "$(psql_q -c "select 1 from pg_roles where rolname = 'sanas'")" != "1" ]; then
  psql_q -c "create role sanas login createdb password 'sanas'"
elif [ "$(psql_q -c "select rolcreatedb from pg_roles where rolname = 'sanas'")" != "t" ]; then
  psql_q -c "alter role sanas createdb"  # roles made by older versions of this script
fi
if [ "$(psql_q -c "select 1 from pg_database where datname = 'sanas_test'")" != "1" ]; then
  psql_q -c "create database sanas_test owner sanas"
fi
# Debian's default listen_addresses is localhost and pg_hba allows md5/scram password logins over TCP from
# 127.0.0.1, which is what the tests use; check it rather than assume.
PGPASSWORD=sanas psql -h 127.0.0.1 -p "$PORT" -U sanas -d postgres -tAq -c "select 1" >/dev/null || {
  echo "ensure_postgres: role sanas cannot log in over TCP at 127.0.0.1:$PORT (check pg_hba.conf)" >&2; exit 1; }
