"""`python -m sidecar`, and the `shutdown-sidecar` console script (`main`)."""

import gc
import sys

# No other import here: whatever this module imports runs before the collector is off.
LONG_RUNNING_MODES = ("serve", "run")


def main() -> int:
    if sys.argv[1:2] and sys.argv[1] in LONG_RUNNING_MODES:
        # Start-up makes some 28,000 objects that live until exit; the cyclic collector, run about
        # 40 times over them while they are imported, finds a few hundred to free and costs about
        # 4 ms of every start. It is off until sidecar.cli has moved them out of its sight
        # (gc.freeze) and turns it back on.
        gc.disable()
    try:
        from sidecar.cli import main as run_command_line

        return run_command_line()
    finally:
        gc.enable()


if __name__ == "__main__":
    raise SystemExit(main())
