# Stand-in for postgres:17.6-bookworm where no registry is reachable (tests only; built by
# tests/deploy/images/build.sh). It is Debian bookworm's PostgreSQL 15, not 17. What
# docker-compose.yml relies on from the official image, and only that: the entrypoint's first
# start (POSTGRES_USER/POSTGRES_PASSWORD, scripts in /docker-entrypoint-initdb.d run once as
# POSTGRES_USER, a server on the Unix socket only until they are done), the data in
# /var/lib/postgresql/data, password logins from other hosts (scram-sha-256), pg_isready and
# psql on PATH, and SIGINT as the stop signal (a fast shutdown on `docker stop`).
FROM hpsearch-standin/debian:bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh
USER postgres
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
