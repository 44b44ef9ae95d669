"""Fire lane (消防通道): a car or truck standing on a fire lane.

One case costs 1 point in the civilised-city assessment. A car is "on" the lane when the point where
it touches the ground (its box's bottom centre) is inside the drawn lane; one driving along or through
the lane never raises, however slowly, as long as it keeps moving (see :class:`DwellRule`).
"""
from __future__ import annotations

from vision.rules.base import DwellRule


class FireLaneRule(DwellRule):
    """A vehicle of ``params.classes`` standing still on the fire-lane zone for ``params.dwell_s``.

    >>> from zoneinfo import ZoneInfo
    >>> from vision.config import RuleParams, Zone
    >>> rule = FireLaneRule(compound_id="c1", camera_id="cam1",
    ...                     zone=Zone(id="lane", kind="fire_lane", polygon=((0, 0), (1, 0), (1, 1))),
    ...                     params=RuleParams(classes=("car",)), tz=ZoneInfo("UTC"), model_version="m1")
    >>> rule.name
    'fire_lane'
    """

    name = "fire_lane"
