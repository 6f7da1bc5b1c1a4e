# satchunk image: the CLI, the Dask scheduler/worker and the web dashboard, CPU only.
#   docker build -t satchunk:latest .
#   docker run --rm satchunk:latest                 # satchunk --help
# Credentials are never baked in: pass AWS_* / SATCHUNK_STORE at run time
# (docker-compose.yml, a Kubernetes Secret, or `docker run -e`).
FROM python:3.11-slim-bookworm

# MALLOC_MMAP_THRESHOLD_: Dask's workers would otherwise mmap every torch activation
# (twice as slow per tile); the same value satchunk/cluster.py gives local workers.
# WORKER_SATURATION=1.0: a worker holds only the task it runs, so a dying worker makes
# only that task suspect (satchunk/cluster.py sets the same for local clusters).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MALLOC_MMAP_THRESHOLD_=33554432 \
    DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION=1.0

# torch first, pinned, from the CPU index: pyproject only says torch>=2.4, and resolving that
# from PyPI pulls several GB of CUDA wheels. The project install below then keeps this torch.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# The project itself (no tests, benchmarks or local data; see .dockerignore).
# prometheus-client is what makes the Dask scheduler serve /metrics for Prometheus.
WORKDIR /tmp/satchunk-src
COPY pyproject.toml README.md ./
COPY chunkstore ./chunkstore
COPY ingest ./ingest
COPY models ./models
COPY inference ./inference
COPY training ./training
COPY dashboards ./dashboards
COPY satchunk ./satchunk
RUN pip install --no-cache-dir . "prometheus-client>=0.20" \
    && python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__" \
    && cd / && rm -rf /tmp/satchunk-src

# Run as an unprivileged user; /work is its working directory (runs/, scratch files).
# (uid/gid 10001: Kubernetes' runAsNonRoot needs the number, see deploy/kubernetes/)
RUN groupadd --gid 10001 satchunk \
    && useradd --create-home --uid 10001 --gid satchunk satchunk \
    && mkdir -p /work \
    && chown satchunk:satchunk /work
USER satchunk
WORKDIR /work

# 8786 Dask scheduler, 8787 Dask dashboard (+ /metrics), 8050 satchunk dashboard
EXPOSE 8786 8787 8050

CMD ["satchunk", "--help"]
