"""E-bikes indoors (电动车进楼入梯 / 飞线充电): a two-wheeler standing in a corridor, stairwell or lobby,
or wheeled into a lift.

A fire in a charging e-bike battery inside a building is what the standard guards against; one case
of illegal charging costs 1 point. The rule reports an e-bike standing indoors. Whether it is
*charging* is not something boxes show (a cable is a few pixels wide and the detector has no class
for it), so ``details["charging"]`` is ``None`` (unknown) — unless the site drew the zone around a
socket (``has_socket: true``), where standing beyond ``dwell_s`` is reported as ``True`` (suspected,
``details["charging_basis"] == "at_socket"``). See docs/rules.md.
"""
from __future__ import annotations

from vision.config import EbikeIndoorParams, RuleParams
from vision.rules.base import DwellRule, Occupancy


class EbikeIndoorRule(DwellRule):
    """A two-wheeler of ``params.classes`` standing still in the zone for ``params.dwell_s``.

    In an ``elevator`` zone the dwell is ``elevator_dwell_s`` (default 1.5 s, so the alert comes
    within 2 s of frame time of a confirmed sighting) and the stationarity tolerance is
    ``elevator_stationary_tolerance``: an e-bike being wheeled into the lift is the violation, it
    need not stand still. Everything else is :class:`DwellRule`.

    >>> from zoneinfo import ZoneInfo
    >>> from vision.config import Zone
    >>> lift = Zone(id="lift", kind="elevator", polygon=((0, 0), (1, 0), (1, 1)))
    >>> EbikeIndoorRule(compound_id="c", camera_id="cam", zone=lift, params=EbikeIndoorParams(),
    ...                 tz=ZoneInfo("UTC"), model_version="m").params.dwell_s
    1.5
    """

    name = "ebike_indoor"

    def __init__(self, *, params: RuleParams, zone, **kwargs):
        if not isinstance(params, EbikeIndoorParams):  # plain RuleParams (tests, old callers): defaults
            params = EbikeIndoorParams.model_validate(params.model_dump())
        self.in_elevator = zone.kind == "elevator"
        if self.in_elevator:
            # Values were validated in their own fields; model_copy only moves them into place.
            params = params.model_copy(update={"dwell_s": params.elevator_dwell_s,
                                               "stationary_tolerance": params.elevator_stationary_tolerance})
        super().__init__(params=params, zone=zone, **kwargs)

    def extra_details(self, occ: Occupancy) -> dict:
        at_socket = bool(self.params.has_socket) and not self.in_elevator
        return {
            "situation": "elevator" if self.in_elevator else "parked_indoors",
            # True only where the site marked a socket; never inferred from the picture.
            "charging": True if at_socket else None,
            "charging_basis": "at_socket" if at_socket else None,
        }
