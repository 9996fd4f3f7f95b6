# telnyx-archiver: the nightly archiver as a container. Default command: the long-lived scheduler.
#   docker build -t telnyx-archiver .
#   docker run --rm -e TELNYX_API_KEY -e TELNYX_ARCHIVER_DESTINATION=s3://bucket/prefix telnyx-archiver
# One-shot runs (Kubernetes CronJob, cron): pass a command, e.g. `telnyx-archiver run`.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY pipeline ./pipeline
# A wheel first, so the runtime image holds no sources or build tools.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m pip wheel --constraint constraints.txt --wheel-dir /wheels /wheels/telnyx_archiver-*.whl

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN groupadd --system --gid 10001 archiver \
 && useradd --system --uid 10001 --gid archiver --home-dir /home/archiver --create-home archiver
COPY --from=build /wheels /wheels
RUN python -m pip install --no-index --find-links /wheels /wheels/telnyx_archiver-*.whl \
 && rm -rf /wheels
COPY config/archiver.example.toml /etc/telnyx-archiver/archiver.example.toml
USER 10001:10001
WORKDIR /home/archiver
# Backfill checkpoints live here; mount a volume to keep them across containers.
VOLUME ["/home/archiver/.local/state/telnyx-archiver"]
ENTRYPOINT ["telnyx-archiver"]
CMD ["schedule"]
