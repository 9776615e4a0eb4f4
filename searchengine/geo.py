"""Place names for GPS positions, offline: reverse_geocode ships GeoNames' places of 1,000
people or more (3.4 MB in its wheel) and finds the nearest with a k-d tree.

A photo in central Lisbon is nearest to a neighbourhood ("Intendente"), so two lookups are
kept: the nearest place of any size (`locality`) and the nearest of CITY_POPULATION people
or more (`city`), each only within MAX_KM; `county`, `region` (state, province) and
`country` come with the nearest place (none out at sea). Loading the data takes about
1.7 s and 150 MB, once per indexing process that meets a GPS position; queries never load
it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from typing import Any

CITY_POPULATION = 100_000
MAX_KM = 30.0
"""A town or city farther than this from the position is not named for it."""
REGION_KM = 150.0
"""Nor are the region and country of the nearest place when it is farther than this (a
position at sea)."""
LEVELS = ("locality", "city", "county", "region", "country")

_LOCK = threading.Lock()
log = logging.getLogger(__name__)


def places_of(coords: Sequence[tuple[float, float]]) -> list[dict[str, str] | None]:
    """Names per (lat, lon): {"locality", "city", "county", "region", "country"} (those
    known), or None where nothing could be named."""
    if not coords:
        return []
    try:
        with _LOCK:
            import reverse_geocode

            near = reverse_geocode.search(list(coords))
            big = reverse_geocode.search(list(coords), min_population=CITY_POPULATION)
    except Exception as exc:  # missing data, a broken install: places are a bonus
        log.warning("reverse geocoding failed: %s", exc)
        return [None] * len(coords)
    return [_names(c, a, b) for c, a, b in zip(coords, near, big, strict=True)]


def place_of(lat: float, lon: float) -> dict[str, str] | None:
    return places_of([(lat, lon)])[0]


def add_place(meta: dict[str, Any]) -> None:
    """Name the place of a file whose metadata has a GPS position (`meta["gps"]`)."""
    gps = meta.get("gps")
    if not isinstance(gps, dict) or "place" in meta:
        return
    try:
        lat, lon = float(gps["lat"]), float(gps["lon"])
    except (KeyError, TypeError, ValueError):
        return
    place = place_of(lat, lon)
    if place:
        meta["place"] = place


def place_names(place: Any) -> list[tuple[str, str]]:
    """(level, name) pairs of a stored place, most local first, without repeats."""
    if not isinstance(place, dict):
        return []
    out: list[tuple[str, str]] = []
    for level in LEVELS:
        name = place.get(level)
        if isinstance(name, str) and name.strip():
            out.append((level, name.strip()))
    return out


def _names(
    coord: tuple[float, float], near: dict[str, Any], big: dict[str, Any]
) -> dict[str, str] | None:
    out: dict[str, str] = {}
    nearest = km(coord, (near["latitude"], near["longitude"]))
    if nearest > REGION_KM:
        return None
    if nearest <= MAX_KM:
        out["locality"] = near["city"]
    if km(coord, (big["latitude"], big["longitude"])) <= MAX_KM:
        out["city"] = big["city"]
    for level, key in (("county", "county"), ("region", "state"), ("country", "country")):
        if near.get(key):
            out[level] = near[key]
    return out or None


def km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine), kilometres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(min(1.0, h)))
