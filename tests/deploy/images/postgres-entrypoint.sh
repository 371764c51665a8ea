#!/usr/bin/env bash
# The official postgres image's first start, reduced to what docker-compose.yml uses.
set -euo pipefail

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
  user="${POSTGRES_USER:-postgres}"
  # UTF-8, as the official image: with SQL_ASCII, psycopg returns bytes and MLflow fails.
  initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  # The init scripts see a server on the Unix socket only, so a TCP healthcheck stays unhealthy.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  export PGUSER="$user" PGHOST=/var/run/postgresql
  if [ "$user" != postgres ]; then
    psql -v ON_ERROR_STOP=1 --no-psqlrc --dbname postgres -c "CREATE DATABASE \"$user\"" >/dev/null
  fi
  for script in /docker-entrypoint-initdb.d/*; do
    case "$script" in
      *.sh) echo "running $script"; bash "$script" ;;
      *.sql) echo "running $script"; psql -v ON_ERROR_STOP=1 --no-psqlrc --dbname postgres -f "$script" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  unset PGUSER PGHOST
fi

if [ "${1:-}" = postgres ]; then
  shift
  exec postgres -c listen_addresses='*' "$@"
fi
exec "$@"
