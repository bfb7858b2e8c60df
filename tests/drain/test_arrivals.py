from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

import pytest

from sidecar.drain.arrivals import ArrivalLog, IdentityDiff, PreT0Traffic, UnseenArrivals
from tests.drain.arrival_traffic import count_arrivals


def test_arrival_log_rate_and_longest_gap_include_the_quiet_up_to_t0() -> None:
    log = ArrivalLog(started_at=100.0)
    for at in (101.0, 101.5, 104.0):
        log.add(at, 2)
    traffic = log.before(110.0)
    assert traffic == PreT0Traffic(arrivals=6, span_seconds=10.0, longest_gap_seconds=6.0)
    assert traffic.rate_per_second == 0.6


def test_arrival_log_before_t0_reads_only_the_lookback() -> None:
    log = ArrivalLog(started_at=0.0)
    log.add(1.0, 5)
    log.add(299.0, 1)
    assert log.before(300.0, lookback_seconds=10.0) == PreT0Traffic(1, 10.0, 1.0)


def test_arrival_log_with_no_arrival_has_no_rate() -> None:
    traffic = ArrivalLog(started_at=0.0).before(30.0)
    assert traffic.rate_per_second is None
    assert traffic.longest_gap_seconds is None


def test_arrival_log_since_t0_counts_and_times_the_last() -> None:
    log = ArrivalLog(started_at=0.0)
    log.add(9.0, 3)
    log.add(10.5, 1)
    log.add(11.0, 2)
    assert log.since(10.0) == (3, 11.0)


def test_identity_diff_counts_new_connections_and_not_the_node_probes() -> None:
    diff = IdentityDiff(ignored_sources={"10.0.0.1"})
    assert diff.arrivals({("10.1.0.5", 40000, "10.2.0.9"): 1}) == 0  # the baseline
    found = {
        ("10.1.0.5", 40000, "10.2.0.9"): 6,
        ("10.1.0.5", 40001, "10.2.0.9"): 1,
        ("10.0.0.1", 50000, "10.2.0.9"): 6,  # the kubelet's probe, in TIME_WAIT
    }
    assert diff.arrivals(found) == 1
    assert (diff.ignored, diff.seen) == (1, 2)


def test_unseen_arrivals_are_passive_opens_nothing_else_explains() -> None:
    unseen = UnseenArrivals()
    assert unseen.update(100, 10, 0) == 0  # the baseline
    assert unseen.update(105, 11, 0) == 0  # read a tick behind: the five are not judged yet
    # Of the five: one was the sidecar's own accept, two were the node's probes (seen by the dumps).
    assert unseen.update(105, 11, 2) == 2
    assert unseen.update(105, 11, 4) == 0  # two more probes seen early: a dip, never a negative count
    assert unseen.update(106, 11, 4) == 0


def test_unseen_arrivals_after_a_reset_do_not_owe_the_probes_seen_before_it() -> None:
    # ConnectionWatch hands the probes seen since it started; a listener that came and went resets
    # the baseline, and the probes before it must not be taken off the arrivals after it.
    unseen = UnseenArrivals()
    assert unseen.update(0, 0, 0) == 0
    assert unseen.update(10, 0, 3) == 0
    assert unseen.update(10, 0, 3) == 7  # ten passive opens, three of them probes
    unseen.reset()
    assert unseen.update(10, 0, 3) == 0  # the new baseline
    assert unseen.update(14, 0, 3) == 0  # a tick behind
    assert unseen.update(14, 0, 3) == 4  # four arrivals, no probe among them


@pytest.mark.anyio
async def test_arrivals_every_connection_the_server_closes_is_counted() -> None:
    # The case: an app answering one request per connection; 51 in the first second
    # after t0 were reported as 0 by the 50 ms sampling of established connections.
    result = await count_arrivals(51, server_closes_first=True)
    assert result["counted"] == result["accepted"] == 51


def run_in_own_network_namespace(mode: str, count: int) -> dict[str, object]:
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rn", "true"], check=False, capture_output=True).returncode != 0:
        pytest.skip("no unprivileged network namespace here (unshare -rn)")
    script = f"ip link set lo up && exec {sys.executable} -m tests.drain.arrival_traffic {mode} {count}"
    done = subprocess.run([unshare, "-rn", "sh", "-c", script], check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_arrivals_connections_the_server_closes_are_counted_once_in_a_pods_namespace() -> None:
    # The counter counts them at once, and a later dump sees them in TIME_WAIT: not twice.
    result = run_in_own_network_namespace("server", 200)
    assert result == {"accepted": 200, "counted": 200, "counting": "ok"}


def test_arrivals_connections_the_client_closes_first_are_counted_in_a_pods_namespace() -> None:
    # Gone from the server's side within a millisecond, before any dump: only the namespace's
    # TcpPassiveOpens sees them, and only a namespace of its own (as a pod's) lets it be read so.
    result = run_in_own_network_namespace("client", 200)
    assert result == {"accepted": 200, "counted": 200, "counting": "ok"}


@pytest.mark.anyio
async def test_arrivals_counting_says_partial_when_other_listeners_share_the_namespace() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        result = await count_arrivals(5, server_closes_first=True)
    assert result["counted"] == 5
    assert str(result["counting"]).startswith("partial: other listeners share the network namespace (ports ")
