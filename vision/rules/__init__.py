"""Rules: one module per violation, each a small state machine over tracks in a zone.

:func:`build_rules` turns a camera's configured zones into rule objects; the worker feeds each of them
every processed frame with ``rule.update(time_s, tracks, frame_wh, image)`` and forwards the
:class:`~vision.rules.base.RuleEvent` s they return. Rules that judge from boxes alone ignore ``image``;
bin overflow and corridor clutter compare the zone's pixels with its clean baseline.
"""
from __future__ import annotations

import logging

from vision.config import Camera, Compound, SiteConfig
from vision.rules.base import DwellRule, RuleEvent
from vision.rules.bin_overflow import BinOverflowRule
from vision.rules.corridor_clutter import CorridorClutterRule
from vision.rules.ebike_indoor import EbikeIndoorRule
from vision.rules.fire_lane import FireLaneRule

log = logging.getLogger(__name__)

#: rule name (as armed in a zone's ``rules``) → its implementation
RULES: dict[str, type[DwellRule]] = {
    FireLaneRule.name: FireLaneRule,
    BinOverflowRule.name: BinOverflowRule,
    CorridorClutterRule.name: CorridorClutterRule,
    EbikeIndoorRule.name: EbikeIndoorRule,
}

_warned_unimplemented: set[str] = set()

__all__ = ["RULES", "BinOverflowRule", "CorridorClutterRule", "DwellRule", "EbikeIndoorRule", "FireLaneRule",
           "RuleEvent", "build_rules"]


def build_rules(site_config: SiteConfig, compound: Compound, camera: Camera, model_version: str) -> list[DwellRule]:
    """One rule object per (zone of ``camera``, rule armed in that zone) that is implemented and enabled.

    Parameters come from ``site_config.rule_params(rule, zone)`` (site defaults, then the zone's
    overrides and schedule). A rule name that is armed but not implemented yet is skipped with a
    warning logged once per process and rule name; a rule with ``enabled: false`` is skipped quietly.

    Returns:
        The rules in zone order, then in the order the zone lists them.
    """
    rules: list[DwellRule] = []
    for zone in camera.zones:
        for rule_name in zone.rules:
            impl = RULES.get(rule_name)
            if impl is None:
                if rule_name not in _warned_unimplemented:
                    _warned_unimplemented.add(rule_name)
                    log.warning("rule %r is armed (first seen on camera %s, zone %s) but not implemented yet; "
                                "it is ignored", rule_name, camera.id, zone.id)
                continue
            params = site_config.rule_params(rule_name, zone)
            if not params.enabled:
                continue
            rules.append(impl(compound_id=compound.id, camera_id=camera.id, zone=zone, params=params,
                              tz=site_config.tz, model_version=model_version))
    return rules
