"""One row of issue #22's grid (tests/benchmarks/hold_grid.py), fixed 5 s and auto, printed as
the README's table prints it: the runner's smoke test. The whole grid (288 rehearsals, about an
hour on 2 cores at two at a time) is run with `python -m tests.benchmarks.hold_grid run`.

    pytest tests/benchmarks -m benchmark -s -p no:cacheprovider -k hold_grid"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks import hold_grid

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(600)]


def test_benchmark_one_row_of_the_hold_grid(tmp_path: Path) -> None:
    out = tmp_path / "grid.jsonl"
    only = {"propagation": "0.5", "rate": "50", "shape": "steady", "balancer": "l4", "client": "pooled"}
    hold_grid.run(out, jobs=2, only={**only, "kind": "Deployment"})
    records = hold_grid.read_records(out)
    print()
    print(hold_grid.table(records))
    assert {record["case"]["hold"] for record in records} == {"fixed", "auto"}
    assert all(record["verdict"] != "error" for record in records), records
