"""How long the old pods serve under load before the first deletion (--warm-up). An auto hold
judges quiet from the arrivals its sidecar counted before t0; a pod in a cluster has served
for hours, so the rehearsal's old pods must be old enough for that history to behave as a
long-running pod's would. Reads the pod's own sidecar flags; starts nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from sidecar.config import SettingSpec, setting_specs
from sidecar.simulate.podspec import PodTemplate

# A fixed hold reads no history: a second under load measures the "running" phase too.
FIXED_HOLD_WARM_UP_SECONDS: Final = 1.0


def warm_up_seconds(template: PodTemplate, given: float | None) -> float:
    """`given` (--warm-up), else the auto hold's maximum when the pod's sidecar holds auto, else
    FIXED_HOLD_WARM_UP_SECONDS. Why the maximum: the window is at least the longest quiet gap
    before t0, and a gap of the maximum or more sets the window to the maximum, as it would over
    the sidecar's 120 s lookback (sidecar.drain.arrivals). Pods 1-3 s old see instead little
    more than their clients' first connections: a high rate and no gap, a short window."""
    if given is not None:
        return given
    maximum = auto_hold_maximum_seconds(template)
    return FIXED_HOLD_WARM_UP_SECONDS if maximum is None else max(maximum, FIXED_HOLD_WARM_UP_SECONDS)


def auto_hold_maximum_seconds(template: PodTemplate) -> float | None:
    """The longest hold of the pod's sidecar when it holds auto (its flags, else its environment,
    else the sidecar's defaults), or None: a fixed hold, or no sidecar. A value the sidecar would
    refuse is left to it: it is the sidecar's to refuse (the pod does not start)."""
    sidecar = next((c for c in template.all_containers if c.reports), None)
    if sidecar is None:
        return None
    specs = {spec.name: spec for spec in setting_specs()}
    try:
        if setting_value(specs["prestop_delay_seconds"], sidecar.argv, sidecar.env) is not None:
            return None
        maximum = setting_value(specs["prestop_delay_max_seconds"], sidecar.argv, sidecar.env)
    except ValueError:
        return None
    return maximum if isinstance(maximum, float) else None


def setting_value(spec: SettingSpec, argv: Sequence[str], env: Mapping[str, str]) -> object:
    """The setting's value from its text (setting_text), else its default. Raises ValueError."""
    text = setting_text(spec, argv, env)
    return spec.default if text is None else spec.parse(text)


def setting_text(spec: SettingSpec, argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """A setting's text as the sidecar would read it: the last `--flag=V` or `--flag V` before
    `--` (what follows is the app's command, in run mode), else its environment variable."""
    found: str | None = None
    arguments = list(argv[: argv.index("--")] if "--" in argv else argv)
    for index, argument in enumerate(arguments):
        name, equals, value = argument.partition("=")
        if name != spec.flag:
            continue
        if equals:
            found = value
        elif index + 1 < len(arguments):
            found = arguments[index + 1]
    return found if found is not None else env.get(spec.env_var)
