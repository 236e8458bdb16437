"""Places on the Earth for search and cross-reference: great-circle distance and search boxes.

Pure: a sphere of radius 6371.0088 km (the mean radius of WGS 84), the haversine formula, the
bounding box of everything within a distance of a box, and position along a track leg in time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius R1 of the WGS 84 ellipsoid, (2a + b) / 3
KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180.0  # along a meridian, on that sphere
HALF_CIRCUMFERENCE_KM = EARTH_RADIUS_KM * math.pi

# (min_lat, max_lat, min_lon, max_lon) in degrees; min_lon <= max_lon, within [-180, 180]
Box = tuple[float, float, float, float]
WHOLE_EARTH: Box = (-90.0, 90.0, -180.0, 180.0)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in decimal degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def valid_position(lat: float, lon: float) -> bool:
    """Finite, latitude in [-90, 90], longitude in [-180, 180]."""
    return (math.isfinite(lat) and math.isfinite(lon)
            and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0)


def wrap_lon(lon: float) -> float:
    """A longitude brought into [-180, 180)."""
    return (lon + 180.0) % 360.0 - 180.0


def lon_delta(lon_from: float, lon_to: float) -> float:
    """The shorter signed step in longitude from one meridian to another, in [-180, 180)."""
    return wrap_lon(lon_to - lon_from)


def boxes_around(min_lat: float, max_lat: float, min_lon: float, max_lon: float,
                 km: float) -> list[Box]:
    """Boxes holding every point within `km` of some point of the given box.

    The box's longitudes may run past +-180 (an unwrapped leg); the answer is split at the
    antimeridian. Latitude grows by km / KM_PER_DEGREE; longitude by the widest reach of a circle
    of that radius over the box's latitudes, asin(sin d / cos lat) (the standard bounding
    coordinates of a spherical cap); a cap holding a pole takes every longitude.
    """
    if km >= HALF_CIRCUMFERENCE_KM:
        return [WHOLE_EARTH]
    d_deg = km / KM_PER_DEGREE
    lo, hi = min_lat - d_deg, max_lat + d_deg
    if lo <= -90.0 or hi >= 90.0:
        return [(max(lo, -90.0), min(hi, 90.0), -180.0, 180.0)]
    d = km / EARTH_RADIUS_KM
    widest = math.radians(max(abs(min_lat), abs(max_lat)))
    reach = math.sin(d) / math.cos(widest)
    if reach >= 1.0:
        return [(lo, hi, -180.0, 180.0)]
    dl = math.degrees(math.asin(reach))
    return [(lo, hi, a, b) for a, b in split_lon_range(min_lon - dl, max_lon + dl)]


def split_lon_range(west: float, east: float) -> list[tuple[float, float]]:
    """A run of longitude from `west` eastwards to `east` (possibly past +-180) as ranges in
    [-180, 180]: one range, or two when it crosses the antimeridian."""
    if east - west >= 360.0:
        return [(-180.0, 180.0)]
    w = wrap_lon(west)
    e = w + (east - west)
    if e <= 180.0:
        return [(w, e)]
    return [(w, 180.0), (-180.0, e - 360.0)]


def bbox_boxes(west: float, south: float, east: float, north: float) -> list[Box]:
    """An RFC 7946 bbox (west, south, east, north) as boxes; west > east crosses +-180 (§5.2)."""
    if west <= east:
        return [(south, north, west, east)]
    return [(south, north, west, 180.0), (south, north, -180.0, east)]


@dataclass(frozen=True, slots=True)
class Leg:
    """A piece of track between two timed points, travelled at constant speed in lat/lon.

    Longitude is interpolated the shorter way round (so a leg may cross +-180); t0 <= t1 are Unix
    seconds. A lone point is a leg with both ends equal.
    """

    segment: str
    t0: float
    lat0: float
    lon0: float
    alt0: float | None
    ref0: str
    t1: float
    lat1: float
    lon1: float
    alt1: float | None
    ref1: str

    def at(self, t: float) -> tuple[float, float, float | None]:
        """(lat, lon, alt) at time t, t within [t0, t1]."""
        span = self.t1 - self.t0
        f = 0.0 if span <= 0 else min(1.0, max(0.0, (t - self.t0) / span))
        return self.at_fraction(f)

    def at_fraction(self, f: float) -> tuple[float, float, float | None]:
        lat = self.lat0 + f * (self.lat1 - self.lat0)
        lon = wrap_lon(self.lon0 + f * lon_delta(self.lon0, self.lon1))
        alt = None
        if self.alt0 is not None and self.alt1 is not None:
            alt = self.alt0 + f * (self.alt1 - self.alt0)
        return lat, lon, alt

    def box(self) -> tuple[float, float, float, float]:
        """(min_lat, max_lat, west, east), east possibly past 180 when the leg crosses it."""
        east = self.lon0 + lon_delta(self.lon0, self.lon1)
        return (min(self.lat0, self.lat1), max(self.lat0, self.lat1),
                min(self.lon0, east), max(self.lon0, east))


@dataclass(frozen=True, slots=True)
class Subject:
    """What is matched against a track: a place, and a time interval [t_lo, t_hi] (an instant
    when equal) that the track may miss by at most `window` seconds."""

    lat: float
    lon: float
    t_lo: float
    t_hi: float
    window: float


@dataclass(frozen=True, slots=True)
class Approach:
    """The best position of a leg for a subject: where and when, how far, how far off in time."""

    t: float
    lat: float
    lon: float
    alt: float | None
    distance_km: float
    dt_s: float  # track time minus the subject's time (0 inside the subject's interval)
    score: float  # sqrt((distance/km)^2 + (dt/window)^2): 0 is same place, same time


def best_on_leg(leg: Leg, subject: Subject, km: float) -> Approach | None:
    """The position on `leg` nearest the subject in space-time, if one is within `km` and the
    subject's window; else None.

    "Nearest" minimises score = sqrt((d / km)^2 + (dt / window)^2). The minimising time is found
    in a local plane at the subject (x east, y north, km), where the score is a quadratic in time;
    every distance reported, and the `km` test itself, is haversine at that time. The plane is
    only used to pick the time, with a 2 % margin on the distance test so that its error (under
    1 % within 100 km of the subject up to latitude 70°, 1.8 % at 80°) cannot lose a match; when
    the best time so found lies beyond `km` on the sphere, the best one within is on the limit,
    found by bisection towards the closest approach.
    """
    lo = max(leg.t0, subject.t_lo - subject.window)
    hi = min(leg.t1, subject.t_hi + subject.window)
    if lo > hi:
        return None
    if leg.t1 <= leg.t0:  # an instant: the two ends (a lone point, or a jump)
        ends = [_evaluate(leg, subject, km, leg.t0, 0.0), _evaluate(leg, subject, km, leg.t0, 1.0)]
        return _best([a for a in ends if a is not None])
    k_lon = math.cos(math.radians(subject.lat)) * KM_PER_DEGREE
    x0 = lon_delta(subject.lon, leg.lon0) * k_lon
    y0 = (leg.lat0 - subject.lat) * KM_PER_DEGREE
    x1 = x0 + lon_delta(leg.lon0, leg.lon1) * k_lon
    y1 = (leg.lat1 - subject.lat) * KM_PER_DEGREE
    span = leg.t1 - leg.t0
    vx, vy = (x1 - x0) / span, (y1 - y0) / span  # km per second
    feasible = _within(x0, y0, vx, vy, km * 1.02)
    if feasible is None:
        return None
    # The time term is zero inside the subject's interval, (t - edge)^2 outside it.
    pieces = [(lo, min(hi, subject.t_lo), subject.t_lo, True),
              (max(lo, subject.t_lo), min(hi, subject.t_hi), 0.0, False),
              (max(lo, subject.t_hi), hi, subject.t_hi, True)]
    found: list[Approach] = []
    vv = vx * vx + vy * vy
    for a, b, edge, timed in pieces:
        a = max(a, leg.t0 + feasible[0])
        b = min(b, leg.t0 + feasible[1])
        if a > b:
            continue
        wt = 1.0 / subject.window**2 if timed and subject.window > 0 else 0.0
        u_best = _argmin(x0, y0, vx, vy, km, wt, leg.t0 - edge)
        t_best = min(b, max(a, leg.t0 + u_best if u_best is not None else a))
        hit = _evaluate(leg, subject, km, t_best, (t_best - leg.t0) / span)
        if hit is None:
            # The best time lies past the distance limit (so the best feasible one is on it):
            # walk back towards the closest approach, along which distance only falls.
            t_near = min(b, max(a, leg.t0 - (x0 * vx + y0 * vy) / vv if vv > 0 else a))
            hit = _evaluate(leg, subject, km, t_near, (t_near - leg.t0) / span)
            if hit is not None:
                hit = _edge(leg, subject, km, t_near, t_best, span) or hit
        if hit is not None:
            found.append(hit)
    return _best(found)


def _edge(leg: Leg, subject: Subject, km: float, inside: float, outside: float,
          span: float) -> Approach | None:
    """The time between `inside` (within km) and `outside` (beyond) where the distance reaches
    km, by bisection on the haversine distance; the approach there."""
    for _ in range(60):
        mid = (inside + outside) / 2
        if mid in (inside, outside):
            break
        lat, lon, _ = leg.at_fraction((mid - leg.t0) / span)
        if haversine_km(subject.lat, subject.lon, lat, lon) <= km:
            inside = mid
        else:
            outside = mid
    return _evaluate(leg, subject, km, inside, (inside - leg.t0) / span)


def _within(x0: float, y0: float, vx: float, vy: float,
            r: float) -> tuple[float, float] | None:
    """The interval of u (seconds after t0) where |(x0, y0) + u (vx, vy)| <= r, or None."""
    vv = vx * vx + vy * vy
    pv = x0 * vx + y0 * vy
    pp = x0 * x0 + y0 * y0 - r * r
    if vv == 0:
        return (-math.inf, math.inf) if pp <= 0 else None
    disc = pv * pv - vv * pp
    if disc < 0:
        return None
    root = math.sqrt(disc)
    return (-pv - root) / vv, (-pv + root) / vv


def _argmin(x0: float, y0: float, vx: float, vy: float, km: float, wt: float,
            e: float) -> float | None:
    """u minimising |p0 + u v|^2 / km^2 + wt (u + e)^2 (a quadratic), or None when flat."""
    a = (vx * vx + vy * vy) / (km * km) + wt
    if a <= 0:
        return None
    return -((x0 * vx + y0 * vy) / (km * km) + wt * e) / a


def _evaluate(leg: Leg, subject: Subject, km: float, t: float, f: float) -> Approach | None:
    lat, lon, alt = leg.at_fraction(f)
    d = haversine_km(subject.lat, subject.lon, lat, lon)
    if d > km:
        return None
    dt = t - min(subject.t_hi, max(subject.t_lo, t))
    if abs(dt) > subject.window:
        return None
    time_part = dt / subject.window if subject.window > 0 else 0.0
    score = math.sqrt((d / km) ** 2 + time_part**2)
    return Approach(t=t, lat=lat, lon=lon, alt=alt, distance_km=d, dt_s=dt, score=score)


def _best(found: list[Approach]) -> Approach | None:
    return min(found, key=lambda a: (a.score, a.distance_km, abs(a.dt_s)), default=None)
