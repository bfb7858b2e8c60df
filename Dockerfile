# shutdown-sidecar image: two stages, so the runtime stage has no pip, no build cache and no
# compiler; it runs as a non-root user and needs no writable path (readOnlyRootFilesystem: true).

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY sidecar ./sidecar
# One virtual environment, copied whole into the runtime stage. pip byte-compiles as it
# installs, so nothing needs to write __pycache__ at run time.
RUN python -m venv /opt/sidecar \
    && /opt/sidecar/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && /opt/sidecar/bin/shutdown-sidecar --version

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/sidecar /opt/sidecar
# 65532: the conventional "nonroot" uid; a numeric user lets runAsNonRoot be verified.
USER 65532:65532
EXPOSE 9180
# Exec form: the sidecar is PID 1 of its container and receives the kubelet's SIGTERM itself;
# a shell in between would swallow it.
ENTRYPOINT ["/opt/sidecar/bin/shutdown-sidecar"]
CMD ["serve"]
