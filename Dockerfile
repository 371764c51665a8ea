# The hpsearch image: the CLI, the workers and the MLflow server (one image, one set of pinned
# versions: mlflow, optuna and psycopg come from constraints.txt and pyproject.toml).
#
# torch: the default PyPI wheel of torch 2.13.0 for Linux x86_64 is a CUDA 13 build that ships
# its own CUDA and cuDNN libraries (nvidia-*-cu13 wheels), so the image needs no CUDA base
# image, only the host's NVIDIA driver (CUDA 13 needs driver >= 580) and the NVIDIA Container
# Toolkit. For an older driver, build against a CUDA 12 wheel index, e.g.
#   docker compose build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
# (with a TORCH_VERSION that index has). Hosts without a GPU run the same image on CPU.
#
# Builders: the classic builder (Debian's docker.io, docker-compose 1.29) and BuildKit both
# build this file; so it uses no BuildKit-only syntax (no `COPY --chmod`, no `RUN --mount`)
# and no `# syntax=` line (that makes BuildKit pull a frontend image from a registry).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=""
# A directory page of wheels (pip --find-links) consulted besides PyPI, e.g. a CPU build of torch
# on a machine without a GPU: --build-arg WHEELS_URL=http://127.0.0.1:8000/ (with --network host).
# Empty by default: PyPI only.
ARG WHEELS_URL=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# A fixed non-root uid, so files in the named volumes keep one owner across rebuilds.
RUN groupadd --system --gid 10001 hpsearch \
 && useradd --system --uid 10001 --gid hpsearch --create-home --home-dir /home/hpsearch hpsearch

WORKDIR /opt/hpsearch

# PgBouncer, for `hpsearch proxy` (the `pgbouncer` service): Debian's package.
RUN apt-get update \
 && apt-get install -y --no-install-recommends pgbouncer \
 && rm -rf /var/lib/apt/lists/*

# torch first, in its own layer: it is by far the largest and changes least often.
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
      pip install "torch==${TORCH_VERSION}" --index-url "$TORCH_INDEX_URL"; \
    else \
      pip install ${WHEELS_URL:+--find-links "$WHEELS_URL"} "torch==${TORCH_VERSION}"; \
    fi

# The project's dependencies, with the versions CI tests (constraints.txt pins torch, optuna and
# mlflow; the torch pin is dropped here so a TORCH_VERSION build argument can choose another
# build). A layer of their own, read from pyproject.toml: a change to the code alone then
# rebuilds in seconds instead of installing every dependency again.
COPY pyproject.toml constraints.txt README.md ./
RUN grep -v '^torch==' constraints.txt > /tmp/constraints-no-torch.txt \
 && python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > /tmp/requirements.txt \
 && pip install ${WHEELS_URL:+--find-links "$WHEELS_URL"} -c /tmp/constraints-no-torch.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
# Then the project itself (its dependencies are all there: nothing is downloaded).
COPY spaces ./spaces
COPY trainers ./trainers
COPY search ./search
RUN pip install ${WHEELS_URL:+--find-links "$WHEELS_URL"} -c /tmp/constraints-no-torch.txt . \
 && rm /tmp/constraints-no-torch.txt

# Pins each worker container to one GPU of its host (see deploy/gpu_slot.py).
# (COPY, then chmod: `COPY --chmod` needs BuildKit.)
COPY deploy/gpu_slot.py /usr/local/bin/hpsearch-gpu-slot
RUN chmod 0755 /usr/local/bin/hpsearch-gpu-slot
# MLflow's login settings, used only with deploy/compose.private-network.yml (no secret in it).
COPY deploy/mlflow-auth.ini /etc/hpsearch/mlflow-auth.ini

# Mount points of the named volumes, created here so that a fresh volume is owned by the
# non-root user (Docker copies the image directory's owner into a new named volume).
RUN mkdir -p /mlflow/artifacts /mlflow/auth /var/lib/hpsearch/gpu-slots /work \
 && chown hpsearch:hpsearch /mlflow/artifacts /mlflow/auth /var/lib/hpsearch/gpu-slots /work

USER hpsearch
WORKDIR /work
CMD ["hpsearch", "--help"]
