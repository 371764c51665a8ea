# Stand-in for python:3.11.14-slim-bookworm where no registry is reachable (tests only; built by
# tests/deploy/images/build.sh from the debootstrap base). What the project's Dockerfile relies
# on from the official image, and only that: Debian bookworm with apt, a Python 3.11 whose
# `python` and `pip` are first on PATH under /usr/local, CA certificates, LANG=C.UTF-8.
# Debian's python3 is 3.11.2, not 3.11.14; a venv at /usr/local puts it where the official
# image has its own build.
FROM hpsearch-standin/debian:bookworm
ENV LANG=C.UTF-8 PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /usr/local \
 && /usr/local/bin/pip --version
# This machine's extra CA certificates (an egress proxy's), copied in by build.sh: not part of
# the official image, but pip here reaches PyPI only through them.
COPY extra-ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
