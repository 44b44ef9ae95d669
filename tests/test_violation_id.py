"""The worker derives a violation's id from its start time (float seconds); the API recomputes it from
the event's ISO ``start_time`` and refuses a mismatch (422). A CI run lost a violation that way: the
float was just under a half millisecond and rounded down, the ISO text said .263500 and rounded up."""
from __future__ import annotations

import datetime as dt
import random

from vision.types import violation_id


def test_id_from_the_float_equals_the_id_from_its_iso_text():
    rng = random.Random(0)
    times = [1765052243.2634999, 1765052243.2635, 1765052243.0005] + \
        [1_700_000_000 + rng.random() * 1e8 for _ in range(50_000)]
    for t in times:
        iso = dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()
        again = dt.datetime.fromisoformat(iso).timestamp()
        assert violation_id("gate-b", "fire_lane", "fire-lane", t) == \
            violation_id("gate-b", "fire_lane", "fire-lane", again), (t, iso)


def test_the_same_millisecond_is_the_same_violation_and_another_is_not():
    base = 1765052243.2631
    assert violation_id("c", "r", "z", base) == violation_id("c", "r", "z", base + 0.0002)
    assert violation_id("c", "r", "z", base) != violation_id("c", "r", "z", base + 0.001)
