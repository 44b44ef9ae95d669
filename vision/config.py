"""Site configuration: one YAML file describes compounds, cameras, zones, rules and schedules.

Parsed into frozen, strict pydantic models. Unknown keys, bad polygons, missing files and
out-of-range values raise :class:`ConfigError` naming the file, the line, the key path and the reason.
Secrets (API keys, camera passwords) never live here: they come from the environment.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)
from shapely.geometry import Polygon as ShapelyPolygon
from shapely.validation import explain_validity

from vision.errors import ConfigError

Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
ZoneKind = Literal["corridor", "stairwell", "lobby", "elevator", "bin_station", "fire_lane", "parking", "gate"]
RuleName = Literal["fire_lane", "bin_overflow", "corridor_clutter", "ebike_indoor"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _label_text(value):
    """A building or floor may be written as a number (``floor: 12``); it is kept as text (``"12"``)."""
    if isinstance(value, bool):
        return value  # refused below: yes/no is not a building
    if isinstance(value, int):
        return str(value)
    return value.strip() if isinstance(value, str) else value


def _named(value: str) -> str:
    if not value.strip():
        raise ValueError("must name a person or team, not blanks")
    return value.strip()


#: no control character (a NUL cannot be stored in PostgreSQL text; a newline would break lists)
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
#: a building or floor as people name it: ``"3"``, ``"3号楼"``, ``"B1"``, ``"12"``
PlaceLabel = Annotated[str, BeforeValidator(_label_text),
                       Field(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS)]
#: who answers for an area of the grid: a person or a team, as the cases show it
Assignee = Annotated[str, BeforeValidator(lambda v: _named(v) if isinstance(v, str) else v),
                     Field(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleWindow(Strict):
    """An armed time window (布防时段) in the site's time zone. ``end`` may be ``24:00``; a window with
    ``end`` before ``start`` runs past midnight into the next day."""

    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = DAYS
    start: str = "00:00"
    end: str = "24:00"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        m = re.fullmatch(r"(\d{2}):(\d{2})", value)
        if not m or int(m.group(1)) > 24 or int(m.group(2)) > 59 or (int(m.group(1)) == 24 and m.group(2) != "00"):
            raise ValueError(f"expected HH:MM between 00:00 and 24:00, got {value!r}")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> "ScheduleWindow":
        if not self.days:
            raise ValueError("an armed window needs at least one day; an empty window would never arm the rule")
        start, end = self.minutes()
        if start % 1440 == end % 1440 and (start, end) != (0, 1440):
            raise ValueError(f"start and end are the same time ({self.start}): the window is empty")
        return self

    def minutes(self) -> tuple[int, int]:
        (sh, sm), (eh, em) = (map(int, self.start.split(":")), map(int, self.end.split(":")))
        return sh * 60 + sm, eh * 60 + em


class Schedule(Strict):
    """A list of armed windows; an empty list means always armed."""

    windows: tuple[ScheduleWindow, ...] = ()

    def armed(self, time_s: float, tz: ZoneInfo) -> bool:
        """Whether the schedule is armed at frame time ``time_s`` (UTC epoch seconds)."""
        if not self.windows:
            return True
        local = dt.datetime.fromtimestamp(time_s, tz)
        minute = local.hour * 60 + local.minute
        today, yesterday = DAYS[local.weekday()], DAYS[(local.weekday() - 1) % 7]
        for w in self.windows:
            start, end = w.minutes()
            if start <= end:
                if today in w.days and start <= minute < end:
                    return True
            else:  # crosses midnight
                if (today in w.days and minute >= start) or (yesterday in w.days and minute < end):
                    return True
        return False


class RuleParams(Strict):
    """Parameters shared by the rules. Times are in seconds of frame time."""

    enabled: bool = True
    classes: tuple[str, ...] = ()
    min_confidence: float = Field(0.4, ge=0.0, le=1.0)
    dwell_s: float = Field(60.0, gt=0, le=7 * 24 * 3600)
    confirm_k: int = Field(3, ge=1, le=100)
    confirm_n: int = Field(5, ge=1, le=100)
    stationary_tolerance: float = Field(0.25, gt=0, le=2.0,
                                        description="how far the box may drift from where it settled, as a fraction of its diagonal")
    grace_s: float = Field(10.0, ge=0, le=3600)
    cooldown_s: float = Field(300.0, ge=0, le=7 * 24 * 3600)
    clear_s: float = Field(30.0, gt=0, le=24 * 3600)
    schedule: Schedule = Schedule()

    @model_validator(mode="after")
    def _k_of_n(self) -> "RuleParams":
        if self.confirm_k > self.confirm_n:
            raise ValueError(f"confirm_k ({self.confirm_k}) must not exceed confirm_n ({self.confirm_n})")
        return self


DEFAULT_RULE_CLASSES: dict[str, tuple[str, ...]] = {
    "fire_lane": ("car", "truck_or_bus"),
    "bin_overflow": ("garbage",),
    # For clutter the detector classes are supporting evidence for static regions found in pixels.
    "corridor_clutter": ("box_or_parcel", "garbage", "bicycle", "two_wheeler"),
    # Bicycles are not the fire risk the standard targets; a site may add "bicycle".
    "ebike_indoor": ("two_wheeler",),
}


def _check_less(params: BaseModel, lower: str, upper: str) -> None:
    if not getattr(params, lower) < getattr(params, upper):
        raise ValueError(f"{lower} ({getattr(params, lower)}) must be less than {upper} ({getattr(params, upper)})")


class FireLaneParams(RuleParams):
    """Fire lane (占用消防通道): a vehicle standing in the zone beyond ``dwell_s``."""

    classes: tuple[str, ...] = DEFAULT_RULE_CLASSES["fire_lane"]
    dwell_s: float = Field(120.0, gt=0, le=7 * 24 * 3600,
                           description="seconds a vehicle must stand in the zone (default 2 minutes)")


class BinOverflowParams(RuleParams):
    """Bin overflow (垃圾箱满溢), judged per ``bin_station`` zone from garbage detections and the
    zone's clean baseline image. Fractions are of the zone's area; times are seconds of frame time."""

    classes: tuple[str, ...] = DEFAULT_RULE_CLASSES["bin_overflow"]
    dwell_s: float = Field(600.0, gt=0, le=7 * 24 * 3600)
    person_classes: tuple[str, ...] = ("person",)
    near_margin: float = Field(0.25, ge=0, le=2.0, description="'around the bin': the zone grown by this "
                               "fraction of its size; garbage and people in it count")
    garbage_cover: float = Field(0.3, gt=0, le=1.0, description="overflow when garbage boxes cover this much")
    changed_fraction: float = Field(0.25, gt=0, le=1.0, description="overflow when this much of the zone "
                                    "differs from its baseline and garbage is present")
    clear_fraction: float = Field(0.08, ge=0, lt=1.0, description="the zone looks like its baseline again "
                                  "(emptied) below this changed fraction")
    pixel_threshold: float = Field(30.0, gt=0, le=255, description="gray-level difference that counts as changed")
    baseline_s: float = Field(600.0, gt=0, le=7 * 24 * 3600, description="time constant of the clean baseline")
    relearn_s: float = Field(3600.0, gt=0, le=7 * 24 * 3600, description="a zone that differs from its "
                             "baseline this long with no garbage and no person seen is relearned (bin replaced)")

    @model_validator(mode="after")
    def _fractions_ordered(self) -> "BinOverflowParams":
        _check_less(self, "clear_fraction", "changed_fraction")
        return self


class CorridorClutterParams(RuleParams):
    """Corridor clutter (楼道乱堆乱放): new static regions against a clean baseline of the zone, with
    detections of ``classes`` as supporting evidence. One violation per spot."""

    classes: tuple[str, ...] = DEFAULT_RULE_CLASSES["corridor_clutter"]
    dwell_s: float = Field(1800.0, gt=0, le=7 * 24 * 3600)
    person_classes: tuple[str, ...] = ("person",)
    pixel_threshold: float = Field(30.0, gt=0, le=255, description="gray-level difference that counts as changed")
    short_s: float = Field(20.0, gt=0, le=3600, description="time constant of the short-term background: "
                           "how fast a newly placed item becomes 'static'")
    baseline_s: float = Field(900.0, gt=0, le=7 * 24 * 3600, description="time constant of the clean "
                              "baseline (follows slow lighting changes where nothing was placed)")
    min_spot_fraction: float = Field(0.01, gt=0, le=1.0, description="smallest spot, as a fraction of the zone")
    lighting_correlation: float = Field(0.9, gt=0, le=1.0, description="a changed region whose texture "
                                        "correlates this well with the baseline is a lighting change")
    require_detection: bool = Field(False, description="count only spots a detection of `classes` supports")
    zone_area_m2: float = Field(0.0, ge=0, le=10000, description="floor area of the zone for the m² estimate; "
                                "0 = not calibrated")

    @model_validator(mode="after")
    def _times_ordered(self) -> "CorridorClutterParams":
        _check_less(self, "short_s", "baseline_s")
        return self


class EbikeIndoorParams(RuleParams):
    """E-bikes indoors (电动车进楼入梯 / 违规充电): a two-wheeler standing in a corridor, stairwell or
    lobby beyond ``dwell_s``; in an ``elevator`` zone beyond ``elevator_dwell_s``."""

    classes: tuple[str, ...] = DEFAULT_RULE_CLASSES["ebike_indoor"]
    dwell_s: float = Field(120.0, gt=0, le=7 * 24 * 3600)
    elevator_dwell_s: float = Field(1.5, gt=0, le=600, description="dwell in elevator zones (alert fast)")
    elevator_stationary_tolerance: float = Field(2.0, gt=0, le=2.0, description="an e-bike being wheeled "
                                                 "around the cabin still counts")
    has_socket: bool = Field(False, description="the zone is drawn around a socket: an e-bike standing in it "
                             "beyond dwell_s is reported as charging (suspected)")


#: the parameter model of each rule
RULE_PARAMS: dict[str, type[RuleParams]] = {
    "fire_lane": FireLaneParams,
    "bin_overflow": BinOverflowParams,
    "corridor_clutter": CorridorClutterParams,
    "ebike_indoor": EbikeIndoorParams,
}


class RulesConfig(Strict):
    """Site-wide rule parameters; a key left out keeps its rule's default (classes included)."""

    fire_lane: FireLaneParams = FireLaneParams()
    bin_overflow: BinOverflowParams = BinOverflowParams()
    corridor_clutter: CorridorClutterParams = CorridorClutterParams()
    ebike_indoor: EbikeIndoorParams = EbikeIndoorParams()

    def params(self, rule: str) -> RuleParams:
        return getattr(self, rule)


class Zone(Strict):
    """A named polygon on one camera's image, in normalised 0..1 coordinates (x right, y down)."""

    id: Identifier
    name: str = ""
    kind: ZoneKind
    polygon: tuple[tuple[float, float], ...]
    rules: tuple[RuleName, ...] = ()
    schedule: Schedule = Schedule()
    overrides: dict[RuleName, dict[str, float | int | bool]] = Field(
        default_factory=dict, description="per-rule parameter overrides for this zone, e.g. {fire_lane: {dwell_s: 30}}")
    building: PlaceLabel | None = Field(None, description="the building the zone is in (default: the camera's)")
    floor: PlaceLabel | None = Field(None, description="the floor the zone is on (default: the camera's when the "
                                     "zone names no building of its own)")

    @field_validator("polygon")
    @classmethod
    def _valid_polygon(cls, pts: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        if len(pts) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(pts)}")
        for i, (x, y) in enumerate(pts):
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"point {i} ({x}, {y}) is outside 0..1 (coordinates are normalised)")
        poly = ShapelyPolygon(pts)
        if not poly.is_valid:
            raise ValueError(f"invalid polygon: {explain_validity(poly)}")
        if poly.area < 1e-4:
            raise ValueError(f"polygon area {poly.area:.2e} is too small")
        return pts


class Camera(Strict):
    """One camera. ``source`` is the detection stream (file, folder or rtsp URL); ``main_source`` the
    full-quality stream for evidence (defaults to ``source``). Credentials in URLs come from the
    environment: write ``rtsp://${CAM_USER}:${CAM_PASS}@host/…``."""

    id: Identifier
    name: str = ""
    source: str
    main_source: str | None = None
    sample_fps: float = Field(5.0, gt=0, le=60)
    loop: bool = Field(False, description="replay a file source forever (demo)")
    keyframes_only: bool = Field(False, description="stream sources: decode only the detection stream's keyframes "
                                 "(saves CPU when sample_fps is at most one per GOP)")
    building: PlaceLabel | None = Field(None, description="the building the camera watches (grid responsibility)")
    floor: PlaceLabel | None = Field(None, description="the floor the camera watches; needs a building")
    zones: tuple[Zone, ...] = ()

    def place_of(self, zone: Zone) -> tuple[str | None, str | None]:
        """``(building, floor)`` of ``zone``: the zone's own, else the camera's. A zone that names a
        building of its own takes no floor from the camera (the camera's floor is in another building)."""
        if zone.building is not None:
            return zone.building, zone.floor
        return self.building, zone.floor if zone.floor is not None else self.floor

    @model_validator(mode="after")
    def _unique_zones(self) -> "Camera":
        seen = [z.id for z in self.zones]
        dup = {z for z in seen if seen.count(z) > 1}
        if dup:
            raise ValueError(f"duplicate zone ids: {sorted(dup)}")
        return self


class GridEntry(Strict):
    """Who answers for an area of the compound (网格化): the whole compound (no keys but ``assignee``), a
    ``building``, a ``floor`` of a building, or one ``zone`` of one ``camera``. A confirmed violation's
    case goes to the most specific entry that covers its zone: zone > floor > building > compound."""

    assignee: Assignee
    building: PlaceLabel | None = None
    floor: PlaceLabel | None = None
    camera: Identifier | None = None
    zone: Identifier | None = None

    @model_validator(mode="after")
    def _one_kind_of_area(self) -> "GridEntry":
        if self.floor is not None and self.building is None:
            raise ValueError(f"floor {self.floor!r} needs the building it is in")
        if (self.camera is None) != (self.zone is None):
            raise ValueError("a zone entry names both camera and zone")
        if self.camera is not None and self.building is not None:
            raise ValueError("an entry is either a zone (camera + zone) or a building/floor, not both")
        return self

    @property
    def level(self) -> str:
        """``zone``, ``floor``, ``building`` or ``compound``."""
        if self.zone is not None:
            return "zone"
        return "floor" if self.floor is not None else ("building" if self.building is not None else "compound")


# A property company (物业公司) or a district (区/街道) as people write it, e.g. "浦东新区花木街道": 1..100
# characters, no slash, backslash or control character, no blank at either end (it is matched exactly).
ORG_NAME_PATTERN = r"^[^\s/\\\x00-\x1f\x7f]([^/\\\x00-\x1f\x7f]*[^\s/\\\x00-\x1f\x7f])?$"


def _org_name(value: str) -> str:
    if not re.fullmatch(ORG_NAME_PATTERN, value):
        raise ValueError(f"{value!r}: a company or district name has no '/', '\\' or control character and no "
                         "blank at either end")
    return value


OrgName = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_org_name)]


class Compound(Strict):
    """A compound: its cameras, and optionally the property company that manages it and the district
    (区/街道) it lies in — what the company reports and the bulletins group by."""

    id: Identifier
    name: str = ""
    company: OrgName | None = Field(None, description="property company (物业公司), e.g. 万科物业")
    district: OrgName | None = Field(None, description="district or sub-district (区/街道), e.g. 浦东新区花木街道")
    cameras: tuple[Camera, ...] = ()
    grid: tuple[GridEntry, ...] = Field((), description="who answers for each area (网格化); see GridEntry")


def grid_problems(compound: Compound) -> list[tuple[tuple, str]]:
    """What is wrong with the compound's ``grid`` beyond each entry's own shape: ``(key path under the
    compound, reason)`` pairs for an area named twice, a camera or zone the compound does not have, and a
    building or floor that no camera or zone of the compound is in (a typo such as ``3`` for ``3号楼``
    would otherwise never match anything)."""
    problems: list[tuple[tuple, str]] = []
    zones = {(cam.id, zone.id): cam.place_of(zone) for cam in compound.cameras for zone in cam.zones}
    cameras = {cam.id for cam in compound.cameras}
    places = set(zones.values()) | {(cam.building, cam.floor) for cam in compound.cameras}
    buildings = {b for b, _ in places if b is not None}
    seen: dict[tuple, int] = {}
    for i, entry in enumerate(compound.grid):
        area = (entry.building, entry.floor, entry.camera, entry.zone)
        if area in seen:
            problems.append((("grid", i), f"the same {entry.level} as grid[{seen[area]}]: each area has one responsible "
                                   f"person (compound {compound.id})"))
        seen.setdefault(area, i)
        if entry.camera is not None and entry.camera not in cameras:
            problems.append((("grid", i, "camera"), f"{entry.camera!r} is not a camera of compound {compound.id}"))
        elif entry.camera is not None and (entry.camera, entry.zone) not in zones:
            problems.append((("grid", i, "zone"), f"camera {entry.camera} of compound {compound.id} has no zone {entry.zone!r}"))
        if entry.building is not None and entry.building not in buildings:
            problems.append((("grid", i, "building"), f"no camera or zone of compound {compound.id} is in building "
                                              f"{entry.building!r} (known: {sorted(buildings) or 'none'})"))
        elif entry.floor is not None and (entry.building, entry.floor) not in places:
            problems.append((("grid", i, "floor"), f"no camera or zone of compound {compound.id} is on floor {entry.floor!r} "
                                           f"of building {entry.building!r}"))
    for ki, cam in enumerate(compound.cameras):
        if cam.floor is not None and cam.building is None:
            problems.append((("cameras", ki, "floor"), f"floor {cam.floor!r} needs a building "
                                                       f"(compound {compound.id}, camera {cam.id})"))
            continue
        for zi, zone in enumerate(cam.zones):
            building, floor = cam.place_of(zone)
            if floor is not None and building is None:
                problems.append((("cameras", ki, "zones", zi, "floor"), f"floor {floor!r} needs a building "
                                 f"(compound {compound.id}, camera {cam.id}, zone {zone.id})"))
    return problems


class ExtraModel(Strict):
    """One more detector run beside ``detector.model`` (e.g. the YOLOX teacher); its classes are
    mapped onto the project classes by its card (``class_map``) and merged (vision.detector.MultiDetector)."""

    model: str = Field(description="path to an ONNX model")
    card: str | None = Field(None, description="its model card, if not next to the model")
    confidence: float | None = Field(None, ge=0.0, le=1.0, description="default: detector.confidence")
    classes: tuple[str, ...] | None = Field(None, description="project classes taken from this model (default: "
                                            "all it maps to); e.g. [garbage] when the default model sees cars better")
    optional: bool = Field(False, description="if the model file is missing, run without it (logged) instead of "
                           "refusing the site file — for a model that lives outside the deployment, e.g. the teacher")

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, value):
        if value is None:
            return value
        from vision.detector import PROJECT_CLASSES
        unknown = [c for c in value if c not in PROJECT_CLASSES]
        if not value or unknown:
            raise ValueError(f"classes must be a non-empty list of {list(PROJECT_CLASSES)}; unknown: {unknown}")
        return value


class DetectorConfig(Strict):
    model: str = Field(description="path to an ONNX model; its model card sits next to it")
    confidence: float = Field(0.25, ge=0.0, le=1.0, description="minimum confidence kept from the model")
    iou: float = Field(0.5, gt=0.0, le=1.0, description="NMS IoU threshold")
    contained: float | None = Field(0.9, gt=0.0, le=1.0,
                                    description="drop a box when this share of it lies inside a more confident box of "
                                                "its class (a part of the same object, e.g. a scooter's lower half); "
                                                "null: plain NMS")
    threads: int = Field(2, ge=1, le=64)
    extra_models: tuple[ExtraModel, ...] = Field((), description="more models whose detections are merged in")


class EvidenceConfig(Strict):
    pre_roll_s: float = Field(5.0, ge=0, le=120)
    post_roll_s: float = Field(10.0, ge=0, le=300)
    clip_fps: float = Field(10.0, gt=0, le=60)
    jpeg_quality: int = Field(90, ge=30, le=100)


class HealthConfig(Strict):
    """Camera health thresholds (vision.health): how long a condition lasts before it is reported."""

    offline_after_s: float = Field(10.0, gt=0, le=3600, description="no frame for this long: offline")
    frozen_after_s: float = Field(30.0, gt=0, le=24 * 3600)
    covered_after_s: float = Field(10.0, gt=0, le=24 * 3600)
    focus_after_s: float = Field(30.0, gt=0, le=24 * 3600)
    moved_after_s: float = Field(30.0, gt=0, le=24 * 3600)
    clear_after_s: float = Field(5.0, ge=0, le=3600, description="normal this long: the condition ended")
    focus_ratio: float = Field(0.35, gt=0, lt=1, description="out of focus below this fraction of the "
                               "reference sharpness")
    view_min_match: float = Field(0.45, gt=0, lt=1, description="view moved below this edge correlation")
    check_interval_s: float = Field(1.0, gt=0, le=60, description="judge at most one frame per interval")


class MotionConfig(Strict):
    """The motion gate: inference is skipped while a camera's scene is unchanged since its last
    inference, but re-run every ``recheck_s`` so that standing objects are still re-confirmed."""

    enabled: bool = True
    pixel_threshold: float = Field(20.0, gt=0, le=255, description="grey difference that counts as changed")
    changed_fraction: float = Field(0.002, gt=0, le=1, description="motion when this much of the image changed")
    recheck_s: float = Field(10.0, gt=0, le=3600, description="infer at least this often even without motion")


class LiveConfig(Strict):
    """Live (stream) cameras: connection, scheduling, health and outputs besides the API."""

    open_timeout_s: float = Field(5.0, gt=0, le=120)
    read_timeout_s: float = Field(5.0, gt=0, le=120, description="no data for this long: reconnect")
    reconnect_max_s: float = Field(30.0, ge=1, le=600, description="longest wait between reconnects")
    max_batch: int = Field(8, ge=1, le=64, description="frames per run of the shared detector")
    max_frame_age_s: float = Field(2.0, gt=0, le=60, description="a queued frame older than this is dropped as stale")
    motion: MotionConfig = MotionConfig()
    health: HealthConfig = HealthConfig()
    mqtt_url: str | None = Field(None, pattern=r"^mqtts?://[^/\s]+$",
                                 description="e.g. mqtt://127.0.0.1:1883; credentials from env via ${VAR}")
    mqtt_topic_prefix: str = Field("compoundeye", pattern=r"^[A-Za-z0-9_/-]{1,64}$")
    metrics_port: int | None = Field(None, ge=1, le=65535, description="serve Prometheus /metrics on 127.0.0.1")
    leases: bool = Field(False, description="split the cameras with the other workers through leases held "
                         "by the API (a dead worker's cameras are taken over within lease_ttl_s + a renewal)")
    lease_ttl_s: float = Field(30.0, ge=3, le=600)


class ApiConfig(Strict):
    url: str = "http://127.0.0.1:8000"
    api_key_env: str = Field("COMPOUNDEYE_API_KEY", description="the environment variable holding the worker key")


class SiteConfig(Strict):
    """A whole site file."""

    version: Literal[1] = 1
    timezone: str = "Asia/Shanghai"
    detector: DetectorConfig
    evidence: EvidenceConfig = EvidenceConfig()
    api: ApiConfig = ApiConfig()
    outbox_dir: str = Field("var/outbox", description="where the worker keeps undelivered events")
    live: LiveConfig = LiveConfig()
    rules: RulesConfig = RulesConfig()
    compounds: tuple[Compound, ...]

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> "SiteConfig":
        ids = [c.id for c in self.compounds]
        cams = [cam.id for c in self.compounds for cam in c.cameras]
        for what, seen in (("compound", ids), ("camera", cams)):
            dup = {x for x in seen if seen.count(x) > 1}
            if dup:
                raise ValueError(f"duplicate {what} ids: {sorted(dup)}")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def cameras(self) -> list[tuple[Compound, Camera]]:
        return [(c, cam) for c in self.compounds for cam in c.cameras]

    def rule_params(self, rule: str, zone: Zone) -> RuleParams:
        """The rule's parameters for one zone (a :data:`RULE_PARAMS` model): site defaults, then the
        zone's overrides and schedule.

        Raises:
            pydantic.ValidationError: an override key unknown to the rule or out of range
                (``load_site_config`` reports it with the file, line, camera, zone and key).
        """
        base = self.rules.params(rule)
        update: dict = dict(zone.overrides.get(rule, {}))
        if zone.schedule.windows:
            update["schedule"] = zone.schedule
        if not update:
            return base
        return type(base).model_validate({**base.model_dump(exclude_unset=True), **update})


def _line_index(text: str) -> dict[tuple, int]:
    """Map each key path in a YAML document to its 1-based line, for error messages."""
    index: dict[tuple, int] = {}

    def walk(node, path: tuple) -> None:
        index[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                index[path + (key.value,)] = key.start_mark.line + 1
                walk(value, path + (key.value,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return index
    if root is not None:
        walk(root, ())
    return index


def _format_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# ``${VAR}``: how a site file names an environment variable (secrets live only there)
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: str) -> str:
    return ENV_REFERENCE.sub(lambda m: os.environ.get(m.group(1), m.group(0)), value)


def _literal_secret_problems(url: str, loc: tuple, lines: dict) -> list[tuple[str, str]]:
    """A problem for each secret written out in ``url`` (a site file is copied around, committed and
    shown on screens; its secrets come from the environment as ``${VAR}``). The URL is not quoted."""
    from vision.rtsp import literal_secrets

    return [(f"line {lines.get(loc, '?')}: {_format_path(loc)}",
             f"{what} written in the URL; put it in an environment variable and write ${{VAR}} in its place "
             f"(secrets never live in the site file)") for what in literal_secrets(url)]


def resolve_path(config_path: Path, value: str) -> Path:
    """A path in the site file is relative to the file's folder."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (config_path.parent / p)


def is_stream_url(source: str) -> bool:
    return bool(re.match(r"^(rtsps?|rtmp|https?|srt|udp)://", source))


def _empty_schedules(node, loc: tuple) -> list[tuple]:
    """Key paths of every ``schedule`` written in the YAML with no windows (``{}``, ``windows: []``, null)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schedule" and (value is None or (isinstance(value, dict) and not value.get("windows"))):
                found.append(loc + (key,))
            else:
                found += _empty_schedules(value, loc + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _empty_schedules(value, loc + (i,))
    return found


def _where(raw: dict, loc: tuple) -> str:
    """`` (camera X, zone Y)`` for an error inside a camera or zone of the raw YAML, by their ids."""
    names = []
    try:
        if loc[:1] == ("compounds",) and len(loc) > 3 and loc[2] == "cameras":
            cam = raw["compounds"][loc[1]]["cameras"][loc[3]]
            names.append(f"camera {cam.get('id', '#' + str(loc[3]))}")
            if len(loc) > 5 and loc[4] == "zones":
                names.append(f"zone {cam['zones'][loc[5]].get('id', '#' + str(loc[5]))}")
        elif loc[:1] == ("compounds",) and len(loc) > 2 and loc[2] == "grid":
            names.append(f"compound {raw['compounds'][loc[1]].get('id', '#' + str(loc[1]))}")
    except (KeyError, IndexError, TypeError, AttributeError):
        pass
    return f" ({', '.join(names)})" if names else ""


def load_site_config(path: str | os.PathLike) -> SiteConfig:
    """Read and validate a site file. Raises ConfigError with every problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", f"cannot read: {exc.strerror or exc}")]) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError(str(path), [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from exc
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [("(top level)", "expected a mapping of settings")])
    lines = _line_index(text)
    empty = _empty_schedules(raw, ())
    if empty:
        # Leaving `schedule` out means "always armed"; an empty one is almost certainly a mistake (a
        # rule that never arms, or one armed around the clock by accident): refuse it.
        raise ConfigError(str(path), [
            (f"line {lines.get(loc, '?')}: {_format_path(loc)}",
             "empty schedule: give at least one window, or leave `schedule` out to arm the rule always"
             + _where(raw, loc)) for loc in empty])
    try:
        config = SiteConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
            line = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), None)
            key = (f"line {line}: " if line else "") + _format_path(loc)
            reason = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                reason = "unknown key"
            problems.append((key, reason + _where(raw, loc)))
        raise ConfigError(str(path), problems) from exc

    problems = []
    if config.live.mqtt_url:
        problems += _literal_secret_problems(config.live.mqtt_url, ("live", "mqtt_url"), lines)
    model = resolve_path(path, config.detector.model)
    if not model.is_file():
        problems.append((f"line {lines.get(('detector', 'model'), '?')}: detector.model", f"file not found: {model}"))
    for i, extra in enumerate(config.detector.extra_models):
        if extra.optional and not resolve_path(path, extra.model).is_file():
            continue     # skipped when the detector is built (vision.detector.build_detector logs it)
        for key in ("model", "card"):
            value = getattr(extra, key)
            if value is not None and not resolve_path(path, value).is_file():
                problems.append((f"line {lines.get(('detector', 'extra_models', i, key), '?')}: "
                                 f"detector.extra_models.{i}.{key}", f"file not found: {resolve_path(path, value)}"))
    for ci, compound in enumerate(config.compounds):
        for sub, reason in grid_problems(compound):
            loc = ("compounds", ci) + sub
            line = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), "?")
            problems.append((f"line {line}: {_format_path(loc)}", reason))
        for ki, cam in enumerate(compound.cameras):
            for key, src in (("source", cam.source), ("main_source", cam.main_source)):
                loc = ("compounds", ci, "cameras", ki, key)
                if src and not is_stream_url(src) and not resolve_path(path, _expand_env(src)).exists():
                    problems.append((f"line {lines.get(loc, '?')}: {_format_path(loc)}",
                                     f"file not found: {resolve_path(path, src)}"))
                if src and is_stream_url(src):
                    problems += _literal_secret_problems(src, loc, lines)
            for zi, zone in enumerate(cam.zones):
                for rule, override in zone.overrides.items():
                    loc = ("compounds", ci, "cameras", ki, "zones", zi, "overrides", rule)
                    try:
                        config.rule_params(rule, zone)
                    except ValidationError as exc:
                        where = f" (camera {cam.id}, zone {zone.id})"
                        for err in exc.errors():
                            problems.append((f"line {lines.get(loc, '?')}: {_format_path(loc + tuple(err['loc']))}",
                                             ("unknown key" if err["type"] == "extra_forbidden"
                                              else err["msg"].removeprefix("Value error, ")) + where))
                    unknown = set(override) - set(RULE_PARAMS[rule].model_fields)
                    if unknown:
                        problems.append((f"line {lines.get(loc, '?')}: {_format_path(loc)}",
                                         f"unknown keys {sorted(unknown)} for rule {rule} "
                                         f"(camera {cam.id}, zone {zone.id})"))
                    if rule not in zone.rules:
                        problems.append((f"line {lines.get(loc, '?')}: {_format_path(loc)}",
                                         f"override for rule {rule!r} which the zone does not arm"))
    if problems:
        raise ConfigError(str(path), problems)
    return config
