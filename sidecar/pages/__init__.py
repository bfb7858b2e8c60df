"""The pages: rehearsals and real pods' shutdown reports as one self-contained HTML page each, and the
per-pod lines `shutdown-sidecar report` prints. Standard library only: nothing here imports the server."""
