# shutdown-sidecar image: two stages, so the runtime stage has no pip, no setuptools, no build cache
# and no compiler; it runs as a non-root user and needs no writable path (readOnlyRootFilesystem: true).

# The base image of both stages, one argument: pin it by digest for a reproducible build,
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY requirements.lock pyproject.toml README.md LICENSE ./
COPY sidecar ./sidecar
# One virtual environment, copied whole into the runtime stage. It is made --without-pip: this
# stage's pip installs into it from outside (--python), so neither pip nor setuptools ends up in it.
# The dependencies are the `server` extra's, from the lock, every file checked against its hashes (a
# rebuild gets the same packages); the project is built into a wheel (its build backend lives only in pip's isolated
# build environment) and installed without dependencies. pip byte-compiles as it installs, so
# nothing needs to write __pycache__ at run time.
RUN python -m venv --without-pip /opt/sidecar \
    && python -m pip --python /opt/sidecar/bin/python install --no-cache-dir --disable-pip-version-check \
        --require-hashes --requirement requirements.lock \
    && python -m pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /tmp/wheels . \
    && python -m pip --python /opt/sidecar/bin/python install --no-cache-dir --disable-pip-version-check \
        --no-deps /tmp/wheels/shutdown_sidecar-*.whl \
    && /opt/sidecar/bin/shutdown-sidecar --version

FROM ${PYTHON_IMAGE}
# Set by the release build: --build-arg VERSION=... --build-arg REVISION=$(git rev-parse HEAD)
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="shutdown-sidecar" \
      org.opencontainers.image.description="Kubernetes shutdown sidecar: readiness that fails at once, a preStop hold until endpoints converge, a measured report of every drain" \
      org.opencontainers.image.source="https://github.com/shutdown-sidecar/shutdown-sidecar" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The base image's own pip, setuptools and wheel are not needed at run time (Python 3.11 images ship
# setuptools 65, which has known CVEs): uninstalled, with the wheels ensurepip would reinstall them from.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && rm -rf /usr/local/lib/python3.11/ensurepip/_bundled
COPY --from=build /opt/sidecar /opt/sidecar
# 65532: the conventional "nonroot" uid; a numeric user lets runAsNonRoot be verified.
USER 65532:65532
EXPOSE 9180
# Exec form: the sidecar is PID 1 of its container and receives the kubelet's SIGTERM itself;
# a shell in between would swallow it.
ENTRYPOINT ["/opt/sidecar/bin/shutdown-sidecar"]
CMD ["serve"]
