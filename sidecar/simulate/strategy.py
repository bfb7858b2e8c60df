"""A workload's update strategy as its controller reads it: the kind, RollingUpdate or Recreate,
maxSurge and maxUnavailable (whole numbers or percentages) resolved against the replicas with the
controller's rounding, and minReadySeconds. Data and arithmetic only; the rollout acts on it."""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from typing import Final

PERCENT: Final = re.compile(r"^(\d+)%$")
# The API's defaults: a Deployment's RollingUpdate takes 25% and 25%; a DaemonSet's 1 and 0.
DEPLOYMENT_DEFAULTS: Final = ("25%", "25%")
DAEMONSET_DEFAULTS: Final = ("0", "1")


class Kind(enum.Enum):
    DEPLOYMENT = "Deployment"
    STATEFULSET = "StatefulSet"
    DAEMONSET = "DaemonSet"


class StrategyType(enum.Enum):
    ROLLING_UPDATE = "RollingUpdate"
    RECREATE = "Recreate"  # Deployments only


def int_or_percent(text: str) -> str:
    """A maxSurge/maxUnavailable value: a whole number or a percentage. Raises ValueError."""
    value = text.strip()
    if not (value.isdigit() or PERCENT.match(value)):
        raise ValueError(f"expected a whole number or a percentage such as 25%, got {text!r}")
    return value


def scaled(value: str, total: int, *, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: a percentage of `total`, rounded up or down."""
    match = PERCENT.match(value)
    if match is None:
        return int(value)
    exact = int(match.group(1)) * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


@dataclasses.dataclass(frozen=True)
class Strategy:
    kind: Kind = Kind.DEPLOYMENT
    type: StrategyType = StrategyType.ROLLING_UPDATE
    max_surge: str | None = None  # None: the kind's default
    max_unavailable: str | None = None
    min_ready_seconds: int = 0
    pod_management_policy: str = "OrderedReady"  # StatefulSets: changes scaling, not updates

    def problem(self) -> str | None:
        """Why the API server would reject it, or None."""
        if self.type is StrategyType.RECREATE and self.kind is not Kind.DEPLOYMENT:
            return f"strategy Recreate is a Deployment's; a {self.kind.value} has RollingUpdate (or OnDelete)"
        if self.kind is Kind.STATEFULSET and (self.max_surge is not None or self.max_unavailable is not None):
            # maxUnavailable for StatefulSets is alpha (MaxUnavailableStatefulSet): not modelled.
            return "a StatefulSet updates one pod at a time: no maxSurge, and its alpha maxUnavailable is not modelled"
        return None

    def fenceposts(self, replicas: int) -> tuple[int, int]:
        """(surge, unavailable) as pods. Deployments: surge rounded up, unavailable down, and 1
        unavailable when both come to 0 (pkg/controller/deployment/util ResolveFenceposts).
        DaemonSets: both rounded up (pkg/controller/daemon/util SurgeCount, UnavailableCount)."""
        if self.kind is Kind.DAEMONSET:
            surge_text, unavailable_text = DAEMONSET_DEFAULTS
            surge = scaled(self.max_surge or surge_text, replicas, round_up=True)
            unavailable = scaled(self.max_unavailable or unavailable_text, replicas, round_up=True)
            return surge, unavailable
        surge_text, unavailable_text = DEPLOYMENT_DEFAULTS
        surge = scaled(self.max_surge or surge_text, replicas, round_up=True)
        unavailable = scaled(self.max_unavailable or unavailable_text, replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, unavailable

    def describe(self, replicas: int) -> str:
        if self.kind is Kind.STATEFULSET:
            return "StatefulSet RollingUpdate: highest ordinal first, each deleted and gone before its replacement"
        if self.type is StrategyType.RECREATE:
            return "Deployment Recreate: every old pod gone before the new ones are created"
        surge, unavailable = self.fenceposts(replicas)
        return f"{self.kind.value} RollingUpdate: maxSurge {surge}, maxUnavailable {unavailable}"
