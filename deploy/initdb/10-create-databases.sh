#!/usr/bin/env bash
# Creates the MLflow and Optuna databases on PostgreSQL's first start (an empty data volume):
# the postgres image runs /docker-entrypoint-initdb.d/* once, as POSTGRES_USER, then never
# again. Safe to run again by hand: an existing database is left alone.
set -euo pipefail

for db in "${MLFLOW_DB:?MLFLOW_DB must be set}" "${OPTUNA_DB:?OPTUNA_DB must be set}"; do
  # format('%I') quotes the name as an identifier; \gexec runs the CREATE only when missing.
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:?}" --dbname postgres \
    --set=db="$db" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
SQL
done
