"""shutdown-sidecar: graceful, measured pod shutdown on Kubernetes."""

__version__ = "0.1.0"
