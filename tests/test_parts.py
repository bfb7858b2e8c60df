from __future__ import annotations

import signal

import pytest

from sidecar.deadline import Budget
from sidecar.lifecycle import Phase, Timeline
from sidecar.parts import Part


@pytest.mark.anyio
async def test_part_hooks_do_nothing_by_default() -> None:
    part = Part()
    timeline = Timeline(Budget(30, 5, 1))
    assert part.drain_sources == frozenset()
    assert dict(part.readiness()) == {}
    assert dict(part.liveness()) == {}
    assert dict(part.start_fields()) == {}
    assert part.exit_status() is None
    part.start()
    await part.run()
    await part.before_report()
    part.on_phase_change(Phase.RUNNING, Phase.PRESTOP_DELAY, timeline)
    part.close()
    assert timeline.phase is Phase.RUNNING


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=str)
def test_part_does_not_deal_with_a_signal_by_default(sig: signal.Signals) -> None:
    assert Part().on_signal(sig) is False
