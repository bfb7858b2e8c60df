"""`python -m sidecar.demo`: the demo app's first address, kept as an alias (the README, the tests
and simulate's default app command use it). The app itself is sidecar.simulate.demo_app."""

from __future__ import annotations

from sidecar.simulate.demo_app import main

if __name__ == "__main__":
    raise SystemExit(main())
