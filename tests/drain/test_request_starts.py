from __future__ import annotations

import pytest

from sidecar.drain.arrivals import LOOKBACK_SECONDS, MAX_BATCHES
from sidecar.drain.request_starts import RequestStarts


def test_request_starts_a_workers_first_count_is_its_baseline() -> None:
    starts = RequestStarts()
    assert not starts.is_reported
    assert starts.update("1", 500, now=10.0) == 0  # requests before the sidecar heard of it: not arrivals
    assert starts.is_reported
    assert starts.arrivals.started_at == 10.0  # the rate is read from the first count on
    assert starts.update("1", 503, now=10.1) == 3
    assert starts.update("1", 503, now=10.2) == 0
    assert list(starts.arrivals.batches) == [(10.1, 3)]
    assert starts.arrived.is_set()


def test_request_starts_workers_are_diffed_each_on_its_own() -> None:
    starts = RequestStarts()
    starts.update("1", 0, now=1.0)
    starts.update("2", 40, now=1.0)  # a new worker: baseline, whatever its count
    assert starts.update("1", 5, now=1.1) == 5
    assert starts.update("2", 42, now=1.1) == 2
    assert starts.arrivals.total == 7
    assert starts.arrivals.started_at == 1.0  # set once, at the first count of any worker


@pytest.mark.parametrize(
    ("later", "arrivals"),
    [
        pytest.param(3, 0, id="went-down-a-restarted-worker-is-a-new-baseline"),
        pytest.param(0, 0, id="back-to-zero"),
    ],
)
def test_request_starts_a_count_that_goes_down_is_never_a_negative_or_bogus_arrival(later: int, arrivals: int) -> None:
    starts = RequestStarts()
    starts.update("1", 100, now=1.0)
    assert starts.update("1", later, now=2.0) == arrivals
    assert starts.update("1", later + 4, now=3.0) == 4  # counted again from the new baseline
    assert starts.arrivals.total == 4


def test_request_starts_a_forgotten_worker_starts_again_from_a_baseline() -> None:
    starts = RequestStarts()
    starts.update("1", 10, now=1.0)
    starts.forget("1")
    assert starts.update("1", 900, now=2.0) == 0
    assert starts.arrivals.total == 0
    assert not starts.arrived.is_set()


def test_request_starts_many_workers_reports_keep_the_whole_lookback() -> None:
    # 64 workers, each reporting ten times a second for the whole lookback: 76,800 reports.
    starts = RequestStarts()
    for worker in range(64):
        starts.update(str(worker), 0, now=0.0)
    for tick in range(1, int(LOOKBACK_SECONDS * 10) + 1):
        for worker in range(64):
            starts.update(str(worker), tick, now=tick / 10 + worker / 6400)
    traffic = starts.arrivals.before(LOOKBACK_SECONDS + 0.1)
    assert traffic.arrivals == 64 * LOOKBACK_SECONDS * 10  # none lost to the log's bound
    assert traffic.rate_per_second == pytest.approx(640, rel=0.01)
    assert len(starts.arrivals.batches) <= MAX_BATCHES
