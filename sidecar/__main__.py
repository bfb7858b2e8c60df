"""`python -m sidecar` is the `shutdown-sidecar` console script."""

from sidecar.cli import main

raise SystemExit(main())
