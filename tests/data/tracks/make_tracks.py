"""Make the track fixtures in this folder (GPX, GeoJSON, GeoJSON text sequence, CSV): run once,
commit the output. The tracks are made up; they are built around the places and times of the real
media in tests/data/media (see that folder's README):

- SYR-A, 2016-10-03 11:00-12:00Z: due north along lon 37.16 at 0.02 deg/min, one point a minute;
  passes about 2.3 km east of aleppo-gps.jpg (36.2021 N, 37.1343 E, 11:22:05Z) about 8.5 min after
  it, and over 36.19 N 37.16 E at 11:30:00Z exactly.
- SYR-B, 2016-10-05 07:00-07:30Z: due east along lat 34.74 at 0.02 deg/min, one point each 30 s;
  passes about 0.85 km north of homs-loci.mp4 (34.73239 N, 36.71370 E, 07:15:30Z) about 4.8 min
  before it.
- SYR-C, 2016-12-21 15:50-16:20Z: straight over damascus-apple-keys.mov's place, a day after it.
- SYR-D, 2016-12-12 07:30-07:50Z: at idlib-exif.heic's time, about 40 km north of it.

    python tests/data/tracks/make_tracks.py
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).parent


def flight(name, start, minutes, step_s, lat0, lon0, dlat_per_min, dlon_per_min, alt):
    t0 = datetime.fromisoformat(start).replace(tzinfo=UTC)
    points = []
    for k in range(int(minutes * 60 / step_s) + 1):
        m = k * step_s / 60
        points.append((t0 + timedelta(seconds=k * step_s), round(lat0 + dlat_per_min * m, 6),
                       round(lon0 + dlon_per_min * m, 6), alt))
    return name, points


FLIGHTS = [
    flight("SYR-A", "2016-10-03T11:00:00", 60, 60, 35.59, 37.16, 0.02, 0.0, 3000.0),
    flight("SYR-B", "2016-10-05T07:00:00", 30, 30, 34.74, 36.5, 0.0, 0.02, 2500.0),
    flight("SYR-C", "2016-12-21T15:50:00", 30, 60, 33.5138, 35.9765, 0.0, 0.02, 4000.0),
    flight("SYR-D", "2016-12-12T07:30:00", 20, 60, 36.30, 36.40, 0.0, 0.02, 4000.0),
]


def z(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def gpx():
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<gpx version="1.1" creator="custody tests" xmlns="http://www.topografix.com/GPX/1/1">',
           '  <wpt lat="36.2" lon="37.1"><name>a waypoint, not a track point</name></wpt>']
    for name, points in FLIGHTS:
        out += ["  <trk>", f"    <name>{name}</name>", "    <trkseg>"]
        for t, lat, lon, alt in points:
            out.append(f'      <trkpt lat="{lat}" lon="{lon}"><ele>{alt}</ele>'
                       f"<time>{z(t)}</time></trkpt>")
        out += ["    </trkseg>", "  </trk>"]
    out.append("</gpx>")
    (HERE / "flights.gpx").write_text("\n".join(out) + "\n")


def feature(name, points):
    return {"type": "Feature", "id": name,
            "geometry": {"type": "LineString",
                         "coordinates": [[lon, lat, alt] for _, lat, lon, alt in points]},
            "properties": {"name": name, "coordTimes": [z(t) for t, *_ in points]}}


def geojson():
    doc = {"type": "FeatureCollection",
           "features": [feature(n, p) for n, p in FLIGHTS]
           + [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
               [[36, 33], [37, 33], [37, 34], [36, 33]]]}, "properties": {"name": "area"}}]}
    (HERE / "flights.geojson").write_text(json.dumps(doc, indent=1) + "\n")
    with (HERE / "flights.geojsonl").open("w") as f:
        for name, points in FLIGHTS:  # one timed Point feature per line (RFC 8142 without RS)
            for t, lat, lon, alt in points:
                f.write(json.dumps({"type": "Feature", "id": name, "geometry": {
                    "type": "Point", "coordinates": [lon, lat, alt]},
                    "properties": {"time": z(t)}}) + "\n")


def csv_file():
    with (HERE / "flights.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "lat", "lon", "alt", "id"])
        rows = [(z(t), lat, lon, alt, name) for name, points in FLIGHTS for t, lat, lon, alt in points]
        rows.sort()  # by time: the flights interleave, as an export of several aircraft would
        w.writerows(rows)


if __name__ == "__main__":
    gpx()
    geojson()
    csv_file()
