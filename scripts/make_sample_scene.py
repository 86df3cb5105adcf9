#!/usr/bin/env python3
"""Generate a deterministic, georeferenced sample scene for the rsdl demo and tests.

The scene is a synthetic aerial image of a peri-urban area near Kampala together with
vector labels that match it pixel for pixel:

* ``scene.tif``: an RGB Byte GeoTIFF in EPSG:32636 (UTM 36N), tiled and DEFLATE compressed.
* ``labels.gpkg``: a GeoPackage in EPSG:4326 with two layers,
  ``landcover`` (polygons, ``class_name`` in building / water / vegetation) and
  ``roads`` (linestrings, ``class_name`` = road, ``width_m``).

The labels are deliberately stored in a different CRS than the raster so that consumers
must reproject, and exactly one building footprint is an invalid self-intersecting
"bow-tie" polygon so that consumers must repair geometries.  A few vegetation patches
cross the raster edge.  The image is painted by rasterizing the same geometries, so
the labels are consistent with what is visible.

Only numpy and GDAL/OGR are used; the same arguments always give identical geometries
and pixel values.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr, osr

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

RASTER_EPSG = 32636
LABEL_EPSG = 4326
ORIGIN_X = 450000.0  # default upper-left corner, UTM 36N, a few km west of Kampala
ORIGIN_Y = 40000.0
FIXED_TIMESTAMP = "2024-01-01T00:00:00.000Z"  # keeps the GeoPackage metadata reproducible

BUILDING_GAP_M = 1.0  # minimum free space around each building
ROAD_CLEARANCE_M = 1.5  # minimum free space between a building and a road edge
WATER_CLEARANCE_M = 3.0
TREE_SHADOW_M = 2.5
NOISE_CHUNK_ROWS = 256
SHADOW_DIRECTION = (-0.6, -0.8)  # unit vector in map coordinates: shadows fall to the SSW

SOIL_RGB = (172.0, 124.0, 92.0)  # red laterite soil
GRASS_RGB = (128.0, 142.0, 84.0)  # dry grass
CLASS_RGB = {  # class raster value -> base colour
    1: (52.0, 82.0, 44.0),  # vegetation
    2: (74.0, 86.0, 72.0),  # muddy water fringe
    3: (30.0, 52.0, 70.0),  # open water
    4: (122.0, 122.0, 120.0),  # road surface
}
ROOF_PALETTE = (
    (168.0, 74.0, 56.0),  # red clay tiles
    (140.0, 88.0, 64.0),  # rusty iron sheets
    (170.0, 172.0, 176.0),  # galvanised iron
    (224.0, 224.0, 216.0),  # white concrete
    (118.0, 122.0, 130.0),  # dark grey sheets
)
VEGETATION, WATER_FRINGE, WATER, ROAD = 1, 2, 3, 4


@dataclass(frozen=True)
class Frame:
    """Square raster footprint in UTM metres."""

    size_px: int
    pixel_size: float
    origin_x: float = ORIGIN_X  # upper-left corner
    origin_y: float = ORIGIN_Y

    @property
    def extent_m(self) -> float:
        """Side length of the scene in metres."""
        return self.size_px * self.pixel_size

    @property
    def xmin(self) -> float:
        """Western edge."""
        return self.origin_x

    @property
    def ymin(self) -> float:
        """Southern edge."""
        return self.origin_y - self.extent_m

    @property
    def geotransform(self) -> tuple[float, float, float, float, float, float]:
        """GDAL geotransform of the north-up raster."""
        return (self.origin_x, self.pixel_size, 0.0, self.origin_y, 0.0, -self.pixel_size)

    def world(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Convert scene-local metres (from the SW corner) to UTM coordinates."""
        return np.asarray(u, dtype=float) + self.xmin, np.asarray(v, dtype=float) + self.ymin

    def inset_box(self, margin: float) -> ogr.Geometry:
        """The scene extent shrunk by ``margin`` metres on every side."""
        e = self.extent_m
        u = np.array([margin, e - margin, e - margin, margin])
        v = np.array([margin, margin, e - margin, e - margin])
        return polygon_from_xy(*self.world(u, v))


@dataclass
class Road:
    """Road centreline in UTM coordinates with its paved width."""

    x: np.ndarray
    y: np.ndarray
    width_m: float

    @property
    def line(self) -> ogr.Geometry:
        """The centreline as an OGR LineString."""
        return line_from_xy(self.x, self.y)

    @property
    def length(self) -> float:
        """Length of the centreline in metres."""
        return float(np.hypot(np.diff(self.x), np.diff(self.y)).sum())

    def point_and_heading(self, distance: float) -> tuple[float, float, float]:
        """Position and direction (radians) at ``distance`` metres along the road."""
        steps = np.hypot(np.diff(self.x), np.diff(self.y))
        chainage = np.concatenate([[0.0], np.cumsum(steps)])
        i = int(np.clip(np.searchsorted(chainage, distance) - 1, 0, len(steps) - 1))
        t = (distance - chainage[i]) / steps[i]
        px = self.x[i] + t * (self.x[i + 1] - self.x[i])
        py = self.y[i] + t * (self.y[i + 1] - self.y[i])
        return px, py, math.atan2(self.y[i + 1] - self.y[i], self.x[i + 1] - self.x[i])


@dataclass
class Building:
    """A building footprint plus everything needed to paint its roof."""

    footprint: ogr.Geometry  # what is written to the labels (may be the invalid bow-tie)
    keep_out: ogr.Geometry  # valid footprint grown by the building gap
    roof_halves: list[ogr.Geometry]
    half_colours: list[tuple[float, float, float]]
    shadow_length: float


@dataclass
class Scene:
    """All vector content of the scene, in UTM coordinates."""

    frame: Frame
    roads: list[Road] = field(default_factory=list)
    water: list[ogr.Geometry] = field(default_factory=list)
    vegetation: list[ogr.Geometry] = field(default_factory=list)
    buildings: list[Building] = field(default_factory=list)


class SpatialHash:
    """Tiny grid index answering 'does this geometry intersect anything stored?'."""

    def __init__(self, cell_m: float = 32.0) -> None:
        """Create an empty index with square cells of ``cell_m`` metres."""
        self.cell_m = cell_m
        self.geoms: list[ogr.Geometry] = []
        self.cells: dict[tuple[int, int], list[int]] = defaultdict(list)

    def _keys(self, geom: ogr.Geometry) -> Iterator[tuple[int, int]]:
        xmin, xmax, ymin, ymax = geom.GetEnvelope()
        for i in range(int(xmin // self.cell_m), int(xmax // self.cell_m) + 1):
            for j in range(int(ymin // self.cell_m), int(ymax // self.cell_m) + 1):
                yield i, j

    def add(self, geom: ogr.Geometry) -> None:
        """Store a geometry."""
        self.geoms.append(geom)
        for key in self._keys(geom):
            self.cells[key].append(len(self.geoms) - 1)

    def near(self, geom: ogr.Geometry) -> list[ogr.Geometry]:
        """Stored geometries whose grid cells overlap those of ``geom``."""
        ids = {i for key in self._keys(geom) for i in self.cells.get(key, ())}
        return [self.geoms[i] for i in sorted(ids)]

    def hits(self, geom: ogr.Geometry) -> bool:
        """True if ``geom`` intersects any stored geometry."""
        return any(other.Intersects(geom) for other in self.near(geom))


# --------------------------------------------------------------------------- geometry helpers


def ring_from_xy(x: Iterable[float], y: Iterable[float]) -> ogr.Geometry:
    """A closed linear ring through the given vertices."""
    ring = ogr.Geometry(ogr.wkbLinearRing)
    pts = list(zip(x, y, strict=True))
    for px, py in [*pts, pts[0]]:
        ring.AddPoint_2D(float(px), float(py))
    return ring


def polygon_from_xy(x: Iterable[float], y: Iterable[float]) -> ogr.Geometry:
    """A single-ring polygon through the given vertices (closed automatically)."""
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring_from_xy(x, y))
    return poly


def line_from_xy(x: Iterable[float], y: Iterable[float]) -> ogr.Geometry:
    """An open LineString through the given vertices."""
    line = ogr.Geometry(ogr.wkbLineString)
    for px, py in zip(x, y, strict=True):
        line.AddPoint_2D(float(px), float(py))
    return line


def rectangle_corners(
    cx: float, cy: float, length: float, depth: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Corner coordinates of a rectangle rotated by ``angle`` around its centre."""
    lu = np.array([-0.5, 0.5, 0.5, -0.5]) * length
    lv = np.array([-0.5, -0.5, 0.5, 0.5]) * depth
    cos, sin = math.cos(angle), math.sin(angle)
    return cx + lu * cos - lv * sin, cy + lu * sin + lv * cos


def oriented_rectangle(cx: float, cy: float, length: float, depth: float, angle: float) -> ogr.Geometry:
    """A rotated rectangle polygon."""
    return polygon_from_xy(*rectangle_corners(cx, cy, length, depth, angle))


def bow_tie(cx: float, cy: float, length: float, depth: float, angle: float) -> ogr.Geometry:
    """The rectangle's corners visited in crossed order: a self-intersecting polygon."""
    x, y = rectangle_corners(cx, cy, length, depth, angle)
    order = [0, 1, 3, 2]
    return polygon_from_xy(x[order], y[order])


def translated(geom: ogr.Geometry, dx: float, dy: float) -> ogr.Geometry:
    """A copy of a polygon shifted by (dx, dy)."""
    moved = ogr.Geometry(ogr.wkbPolygon)
    for r in range(geom.GetGeometryCount()):
        ring = geom.GetGeometryRef(r)
        pts = ring.GetPoints()
        moved.AddGeometry(ring_from_xy([p[0] + dx for p in pts[:-1]], [p[1] + dy for p in pts[:-1]]))
    return moved


def polygon_parts(geom: ogr.Geometry | None, min_area: float = 0.0) -> list[ogr.Geometry]:
    """Explode any (multi)polygon or collection into single polygons above ``min_area``."""
    if geom is None or geom.IsEmpty():
        return []
    if ogr.GT_Flatten(geom.GetGeometryType()) == ogr.wkbPolygon:
        return [geom.Clone()] if geom.GetArea() > min_area else []
    parts: list[ogr.Geometry] = []
    for i in range(geom.GetGeometryCount()):
        parts.extend(polygon_parts(geom.GetGeometryRef(i), min_area))
    return parts


def largest_part(geom: ogr.Geometry | None) -> ogr.Geometry | None:
    """The polygon with the largest area inside ``geom``, if any."""
    parts = polygon_parts(geom)
    return max(parts, key=lambda p: p.GetArea()) if parts else None


def union_all(geoms: Iterable[ogr.Geometry]) -> ogr.Geometry:
    """Union of many polygons (an empty collection if there are none)."""
    multi = ogr.Geometry(ogr.wkbMultiPolygon)
    for geom in geoms:
        for part in polygon_parts(geom):
            multi.AddGeometry(part)
    return multi.UnionCascaded() if multi.GetGeometryCount() else multi


def irregular_blob(
    rng: np.random.Generator, cx: float, cy: float, radius: float, roughness: float
) -> ogr.Geometry:
    """A smooth, irregular, star-shaped polygon such as a lake or a tree stand."""
    theta = np.linspace(0.0, 2.0 * math.pi, 96, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 7):
        r += roughness * rng.uniform(0.3, 1.0) / k * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    r = radius * np.maximum(r, 0.35)
    return polygon_from_xy(cx + r * np.cos(theta), cy + r * np.sin(theta))


# --------------------------------------------------------------------------- scene layout


def wavy(t: np.ndarray, span: float, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A gentle random meander of the given amplitude along ``t`` in [0, span]."""
    phase1, phase2 = rng.uniform(0, 2 * math.pi, size=2)
    return amplitude * (
        np.sin(2 * math.pi * t / span * rng.uniform(0.4, 0.9) + phase1)
        + 0.4 * np.sin(2 * math.pi * t / span * rng.uniform(1.5, 2.5) + phase2)
    )


def make_roads(frame: Frame, rng: np.random.Generator) -> list[Road]:
    """Two through roads forming a cross plus two branches to the scene edge."""
    e = frame.extent_m
    t = np.linspace(0.0, e, 65)
    amp = 0.025 * e
    # Main road, west to east.
    main_v = rng.uniform(0.32, 0.42) * e + wavy(t, e, amp, rng)
    # Second through road, south to north.
    cross_u = rng.uniform(0.52, 0.62) * e + wavy(t, e, amp, rng)
    # Branch from the north-south road to the east edge.
    branch_v0 = rng.uniform(0.72, 0.82) * e
    branch_u0 = float(np.interp(branch_v0, t, cross_u))
    bu = np.linspace(branch_u0, e, 33)
    bv = branch_v0 + 0.04 * e * np.sin(math.pi * (bu - branch_u0) / (e - branch_u0))
    # Branch from the main road to the south edge.
    spur_u0 = rng.uniform(0.18, 0.3) * e
    spur_v0 = float(np.interp(spur_u0, t, main_v))
    sv = np.linspace(spur_v0, 0.0, 33)
    su = spur_u0 + 0.05 * e * np.sin(math.pi * (spur_v0 - sv) / spur_v0)
    widths = (10.0, float(rng.choice([6.0, 10.0])), 6.0, 6.0)
    shapes = [(t, main_v), (cross_u, t), (bu, bv), (su, sv)]
    return [Road(*frame.world(u, v), width) for (u, v), width in zip(shapes, widths, strict=True)]


def road_corridors(roads: list[Road], clearance: float) -> SpatialHash:
    """Index of short buffered road pieces extending ``clearance`` beyond the pavement."""
    index = SpatialHash()
    for road in roads:
        for i in range(len(road.x) - 1):
            piece = line_from_xy(road.x[i : i + 2], road.y[i : i + 2])
            index.add(piece.Buffer(road.width_m / 2 + clearance, 4))
    return index


def carve_water(shape: ogr.Geometry, frame: Frame, corridors: SpatialHash) -> ogr.Geometry | None:
    """Clip a water body to the scene, keep it off the roads and return its largest part."""
    clipped = shape.Intersection(frame.inset_box(1.0))
    blockers = union_all(corridors.near(clipped))
    if not blockers.IsEmpty():
        clipped = clipped.Difference(blockers)
    part = largest_part(clipped)
    return part if part is not None and part.GetArea() > 150.0 else None


def make_lake(frame: Frame, rng: np.random.Generator) -> ogr.Geometry:
    """An irregular lake in the north-western block."""
    e = frame.extent_m
    cx, cy = frame.world(rng.uniform(0.2, 0.3) * e, rng.uniform(0.68, 0.78) * e)
    return irregular_blob(rng, float(cx), float(cy), 0.13 * e, roughness=0.35)


def make_river(frame: Frame, rng: np.random.Generator) -> ogr.Geometry:
    """A meandering river crossing the south-eastern corner."""
    e = frame.extent_m
    s = np.linspace(0.0, 1.0, 80)
    start = np.array([e * 1.02, rng.uniform(0.12, 0.24) * e])
    bend = np.array([rng.uniform(0.78, 0.88) * e, rng.uniform(0.14, 0.22) * e])
    end = np.array([rng.uniform(0.7, 0.82) * e, -0.02 * e])
    curve = np.outer((1 - s) ** 2, start) + np.outer(2 * s * (1 - s), bend) + np.outer(s**2, end)
    normal = np.array([0.7, 0.7])
    curve += np.outer(wavy(s * e, e, 0.015 * e, rng), normal)
    width = float(np.clip(0.03 * e, 8.0, 30.0))
    return line_from_xy(*frame.world(curve[:, 0], curve[:, 1])).Buffer(width / 2, 8)


def make_water(frame: Frame, rng: np.random.Generator, corridors: SpatialHash) -> list[ogr.Geometry]:
    """The lake and river, clipped to the scene and kept off the roads."""
    shapes = [make_lake(frame, rng), make_river(frame, rng)]
    carved = [carve_water(shape, frame, corridors) for shape in shapes]
    return [shape for shape in carved if shape is not None]


def make_vegetation_blobs(frame: Frame, rng: np.random.Generator) -> list[ogr.Geometry]:
    """Raw tree-stand outlines; the first two straddle the scene edge."""
    e = frame.extent_m
    count = max(6, round(10 * (e / 512.0) ** 2))
    inside = frame.inset_box(0.5)
    blobs = []
    for i in range(count):
        if i < 2:  # one on the western or eastern edge, one on the northern or southern edge
            along, across = rng.uniform(0.1, 0.9) * e, float(rng.choice([0.0, e]))
            u, v = (across, along) if i == 0 else (along, across)
        else:
            u, v = rng.uniform(0.0, e, size=2)
        cx, cy = frame.world(u, v)
        blob = irregular_blob(rng, float(cx), float(cy), rng.uniform(12, 45), 0.5)
        blobs.append(blob if i < 2 else blob.Intersection(inside))
    return blobs


def make_single_trees(frame: Frame, rng: np.random.Generator) -> list[ogr.Geometry]:
    """Small round crowns of isolated trees scattered over the scene."""
    count = max(8, round(40 * (frame.extent_m / 512.0) ** 2))
    trees = []
    for _ in range(count):
        cx, cy = frame.world(*rng.uniform(6.0, frame.extent_m - 6.0, size=2))
        trees.append(irregular_blob(rng, float(cx), float(cy), rng.uniform(2.5, 5.0), 0.25))
    return trees


def sample_building_pose(
    frame: Frame, rng: np.random.Generator, roads: list[Road]
) -> tuple[float, float, float, float, float]:
    """A random (centre x, centre y, length, depth, angle), usually facing a road."""
    length = 6.0 + 19.0 * rng.beta(1.6, 3.0)
    depth = 6.0 + (min(length, 16.0) - 6.0) * rng.random()
    if rng.random() < 0.8:
        lengths = np.array([road.length for road in roads])
        road = roads[int(rng.choice(len(roads), p=lengths / lengths.sum()))]
        px, py, heading = road.point_and_heading(rng.uniform(0.0, road.length))
        side = float(rng.choice([-1.0, 1.0]))
        gap = rng.uniform(3.0, 9.0) if rng.random() < 0.6 else rng.uniform(16.0, 45.0)
        offset = side * (road.width_m / 2 + gap + depth / 2)
        cx, cy = px - offset * math.sin(heading), py + offset * math.cos(heading)
        angle = heading + rng.normal(0.0, 0.05)
    else:
        cx, cy = (float(c) for c in frame.world(*rng.uniform(0.0, frame.extent_m, size=2)))
        angle = rng.uniform(0.0, math.pi)
    return float(cx), float(cy), length, depth, float(angle)


def roof_for_pose(
    pose: tuple[float, float, float, float, float], rng: np.random.Generator
) -> tuple[list[ogr.Geometry], list[tuple[float, float, float]]]:
    """Roof pieces and colours: a gable roof (two shaded halves) or a flat roof."""
    cx, cy, length, depth, angle = pose
    base = np.array(ROOF_PALETTE[int(rng.integers(len(ROOF_PALETTE)))])
    colour = tuple(float(c) for c in np.clip(base * rng.uniform(0.9, 1.08) + rng.normal(0, 6, 3), 0, 255))
    if rng.random() < 0.3:
        return [oriented_rectangle(cx, cy, length, depth, angle)], [colour]
    nx, ny = -math.sin(angle) * depth / 4, math.cos(angle) * depth / 4
    halves = [
        oriented_rectangle(cx + nx, cy + ny, length, depth / 2, angle),
        oriented_rectangle(cx - nx, cy - ny, length, depth / 2, angle),
    ]
    shaded = tuple(c * 0.82 for c in colour)
    return halves, [colour, shaded]


def make_buildings(
    frame: Frame,
    rng: np.random.Generator,
    roads: list[Road],
    blocked: SpatialHash,
) -> list[Building]:
    """Place non-overlapping buildings off roads, water and forest; one becomes a bow-tie."""
    target = max(8, round(70 * (frame.extent_m / 512.0) ** 2))
    inside = frame.inset_box(2.0)
    placed = SpatialHash()
    buildings: list[Building] = []
    poses = []
    for _ in range(60 * target):
        if len(buildings) >= target:
            break
        pose = sample_building_pose(frame, rng, roads)
        footprint = oriented_rectangle(*pose)
        if not footprint.Within(inside) or blocked.hits(footprint) or placed.hits(footprint):
            continue
        cx, cy, length, depth, angle = pose
        keep_out = oriented_rectangle(cx, cy, length + 2 * BUILDING_GAP_M, depth + 2 * BUILDING_GAP_M, angle)
        placed.add(keep_out)
        halves, colours = roof_for_pose(pose, rng)
        buildings.append(Building(footprint, keep_out, halves, colours, rng.uniform(0.8, 2.5)))
        poses.append(pose)
    if buildings:
        make_one_bow_tie(buildings, poses, rng)
    return buildings


def make_one_bow_tie(
    buildings: list[Building],
    poses: list[tuple[float, float, float, float, float]],
    rng: np.random.Generator,
) -> None:
    """Replace one building's footprint (and roof) with a self-intersecting bow-tie."""
    i = int(rng.integers(len(buildings)))
    tie = bow_tie(*poses[i])
    buildings[i].footprint = tie
    buildings[i].roof_halves = [tie]
    buildings[i].half_colours = buildings[i].half_colours[:1]


def make_vegetation(
    blobs: list[ogr.Geometry],
    water: list[ogr.Geometry],
    pavement: SpatialHash,
    buildings: list[Building],
) -> list[ogr.Geometry]:
    """Vegetation patches: the blobs minus water, road pavement and buildings."""
    obstacles = SpatialHash()
    for geom in [*water, *(b.keep_out for b in buildings)]:
        obstacles.add(geom)
    for geom in pavement.geoms:
        obstacles.add(geom)
    patches = []
    for blob in blobs:
        blockers = union_all(obstacles.near(blob))
        remainder = blob.Difference(blockers) if not blockers.IsEmpty() else blob
        patches.extend(polygon_parts(remainder, min_area=8.0))
    return patches


def build_scene(frame: Frame, seed: int) -> Scene:
    """Lay out roads, water, vegetation and buildings deterministically from ``seed``."""
    rng = np.random.default_rng(seed)
    scene = Scene(frame)
    scene.roads = make_roads(frame, rng)
    scene.water = make_water(frame, rng, road_corridors(scene.roads, 4.0))
    blobs = make_vegetation_blobs(frame, rng)
    forests, gardens = blobs[: len(blobs) // 2], blobs[len(blobs) // 2 :]
    blocked = road_corridors(scene.roads, ROAD_CLEARANCE_M)
    for geom in [*(w.Buffer(WATER_CLEARANCE_M, 4) for w in scene.water), *forests]:
        blocked.add(geom)
    scene.buildings = make_buildings(frame, rng, scene.roads, blocked)
    gardens += make_single_trees(frame, rng)
    pavement = road_corridors(scene.roads, 0.25)
    scene.vegetation = make_vegetation(forests + gardens, scene.water, pavement, scene.buildings)
    return scene


# --------------------------------------------------------------------------- label output


def spatial_reference(epsg: int) -> osr.SpatialReference:
    """An SRS with x = easting / longitude axis order."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def to_label_crs(geom: ogr.Geometry, transform: osr.CoordinateTransformation) -> ogr.Geometry:
    """A copy of ``geom`` reprojected from UTM to WGS84 lon/lat."""
    out = geom.Clone()
    out.Transform(transform)
    return out


def write_labels(scene: Scene, path: Path) -> dict[str, int]:
    """Write the ``landcover`` and ``roads`` layers; return feature counts per class."""
    if path.exists():
        path.unlink()
    wgs84 = spatial_reference(LABEL_EPSG)
    transform = osr.CoordinateTransformation(spatial_reference(RASTER_EPSG), wgs84)
    gdal.SetConfigOption("OGR_CURRENT_DATE", FIXED_TIMESTAMP)
    try:
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
        landcover = ds.CreateLayer("landcover", wgs84, ogr.wkbPolygon)
        landcover.CreateField(ogr.FieldDefn("class_name", ogr.OFTString))
        roads = ds.CreateLayer("roads", wgs84, ogr.wkbLineString)
        roads.CreateField(ogr.FieldDefn("class_name", ogr.OFTString))
        roads.CreateField(ogr.FieldDefn("width_m", ogr.OFTReal))
        polygons = [
            *(("water", g) for g in scene.water),
            *(("vegetation", g) for g in scene.vegetation),
            *(("building", b.footprint) for b in scene.buildings),
        ]
        landcover.StartTransaction()
        for class_name, geom in polygons:
            add_feature(landcover, to_label_crs(geom, transform), class_name=class_name)
        landcover.CommitTransaction()
        roads.StartTransaction()
        for road in scene.roads:
            add_feature(roads, to_label_crs(road.line, transform), class_name="road", width_m=road.width_m)
        roads.CommitTransaction()
        ds = None
    finally:
        gdal.SetConfigOption("OGR_CURRENT_DATE", None)
    return {
        "building": len(scene.buildings),
        "water": len(scene.water),
        "vegetation": len(scene.vegetation),
        "road": len(scene.roads),
    }


def add_feature(layer: ogr.Layer, geom: ogr.Geometry, **fields: str | float) -> None:
    """Append one feature with the given geometry and attribute values."""
    feature = ogr.Feature(layer.GetLayerDefn())
    for name, value in fields.items():
        feature.SetField(name, value)
    feature.SetGeometry(geom)
    layer.CreateFeature(feature)


# --------------------------------------------------------------------------- rasterization


def rasterize(frame: Frame, shapes: Iterable[tuple[ogr.Geometry, int]], data_type: int) -> np.ndarray:
    """Burn (geometry, value) pairs in order into an in-memory raster; later ones win."""
    raster = gdal.GetDriverByName("MEM").Create("", frame.size_px, frame.size_px, 1, data_type)
    raster.SetGeoTransform(frame.geotransform)
    srs = spatial_reference(RASTER_EPSG)
    raster.SetSpatialRef(srs)
    source = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = source.CreateLayer("shapes", srs, ogr.wkbUnknown)
    layer.CreateField(ogr.FieldDefn("value", ogr.OFTInteger))
    for geom, value in shapes:
        add_feature(layer, geom, value=value)
    gdal.RasterizeLayer(raster, [1], layer, options=["ATTRIBUTE=value"])
    return raster.GetRasterBand(1).ReadAsArray()


def class_raster(scene: Scene) -> np.ndarray:
    """Ground-cover classes (0 = bare ground) burnt in painting order."""
    shapes: list[tuple[ogr.Geometry, int]] = [(g, VEGETATION) for g in scene.vegetation]
    for water in scene.water:
        shapes.append((water, WATER_FRINGE))
        shapes.extend((core, WATER) for core in polygon_parts(water.Buffer(-2.0, 4)))
    shapes.extend((road.line.Buffer(road.width_m / 2, 4), ROAD) for road in scene.roads)
    return rasterize(scene.frame, shapes, gdal.GDT_Byte)


def roof_raster(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Per-roof-piece ids (0 = no roof) and the matching RGB lookup table."""
    shapes, colours = [], [(0.0, 0.0, 0.0)]
    for building in scene.buildings:
        for half, colour in zip(building.roof_halves, building.half_colours, strict=True):
            colours.append(colour)
            shapes.append((half, len(colours) - 1))
    ids = rasterize(scene.frame, shapes, gdal.GDT_UInt16)
    return ids, np.array(colours, dtype=np.float32)


def shadow_raster(scene: Scene) -> np.ndarray:
    """Mask of building and tree shadows cast towards SHADOW_DIRECTION."""
    dx, dy = SHADOW_DIRECTION
    shapes = [(translated(g, dx * TREE_SHADOW_M, dy * TREE_SHADOW_M), 1) for g in scene.vegetation]
    for b in scene.buildings:
        for half in b.roof_halves:
            for step in (0.5, 1.0):
                shapes.append((translated(half, dx * b.shadow_length * step, dy * b.shadow_length * step), 1))
    return rasterize(scene.frame, shapes, gdal.GDT_Byte).astype(bool)


# --------------------------------------------------------------------------- painting


def add_value_noise(
    total: np.ndarray, rng: np.random.Generator, frame: Frame, cell_m: float, weight: float
) -> None:
    """Add ``weight`` x a smooth random field in [-0.5, 0.5] with ``cell_m`` metre features."""
    cells = math.ceil(frame.extent_m / cell_m) + 2
    grid = rng.random((cells, cells), dtype=np.float32) - np.float32(0.5)
    pos = (np.arange(frame.size_px, dtype=np.float32) + 0.5) * np.float32(frame.pixel_size / cell_m)
    i0 = pos.astype(np.int64)
    f = pos - np.floor(pos)
    f = f * f * (3.0 - 2.0 * f)  # smoothstep removes the bilinear grid pattern
    rows = (grid[:, i0] * (1.0 - f) + grid[:, i0 + 1] * f) * np.float32(weight)
    for r0 in range(0, frame.size_px, NOISE_CHUNK_ROWS):  # bounded temporaries for big scenes
        r = slice(r0, r0 + NOISE_CHUNK_ROWS)
        total[r] += rows[i0[r]] * (1.0 - f[r])[:, None]
        total[r] += rows[i0[r] + 1] * f[r][:, None]


def fractal_noise(rng: np.random.Generator, frame: Frame, cells_m: tuple[float, ...]) -> np.ndarray:
    """Sum of value-noise octaves (halving weights), centred on zero, roughly in [-0.5, 0.5]."""
    total = np.zeros((frame.size_px, frame.size_px), dtype=np.float32)
    weights = [0.5**i for i in range(len(cells_m))]
    for cell_m, weight in zip(cells_m, weights, strict=True):
        add_value_noise(total, rng, frame, cell_m, weight / sum(weights))
    return total


def texture_field(rng: np.random.Generator, frame: Frame, classes: np.ndarray) -> np.ndarray:
    """Multiplicative brightness per pixel: patchy ground, tree crowns, calm water."""
    texture = fractal_noise(rng, frame, (48.0, 16.0, 4.0, 1.5))
    texture *= 0.4
    canopy = fractal_noise(rng, frame, (3.5, 1.5, 0.8))
    canopy *= 2.4
    np.clip(canopy, -0.5, 0.35, out=canopy)  # dark gaps between bright, rounded crowns
    np.copyto(texture, canopy, where=classes == VEGETATION)
    del canopy
    np.multiply(texture, 0.3, out=texture, where=(classes == WATER) | (classes == ROAD))
    texture += 1.0
    return texture


def soften(channel: np.ndarray) -> np.ndarray:
    """Blend with a 3x3 box blur to mimic the optics of a real camera."""
    padded = np.pad(channel, 1, mode="edge")
    box = np.zeros_like(channel)
    n, m = channel.shape
    for di in range(3):
        for dj in range(3):
            box += padded[di : di + n, dj : dj + m]
    box *= 0.4 / 9.0
    channel *= 0.6
    channel += box
    return channel


def paint_band(
    band: int,
    rng: np.random.Generator,
    classes: np.ndarray,
    ground_mix: np.ndarray,
    texture: np.ndarray,
    shadow_only: np.ndarray,
    roofs: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Compose one colour band as uint8."""
    lut = np.zeros(len(CLASS_RGB) + 1, dtype=np.float32)
    for value, rgb in CLASS_RGB.items():
        lut[value] = rgb[band]
    channel = ground_mix * np.float32(GRASS_RGB[band] - SOIL_RGB[band])
    channel += np.float32(SOIL_RGB[band])
    np.copyto(channel, lut[classes], where=classes > 0)
    channel *= texture
    np.multiply(channel, 0.55, out=channel, where=shadow_only)
    roof_ids, roof_colours = roofs
    np.copyto(channel, roof_colours[roof_ids, band], where=roof_ids > 0)
    channel += rng.standard_normal(channel.shape, dtype=np.float32) * np.float32(4.0)
    channel = soften(channel)
    return np.clip(channel + 0.5, 0, 255).astype(np.uint8)


def write_image(scene: Scene, path: Path, seed: int) -> None:
    """Rasterize the scene and paint it into a tiled, compressed RGB GeoTIFF."""
    frame = scene.frame
    rng = np.random.default_rng([seed, 1])
    classes = class_raster(scene)
    roofs = roof_raster(scene)
    shadow_only = shadow_raster(scene) & (roofs[0] == 0) & (classes != VEGETATION)
    ground_mix = fractal_noise(rng, frame, (90.0, 35.0, 12.0))
    ground_mix *= 2.2
    ground_mix += 0.5
    np.clip(ground_mix, 0.0, 1.0, out=ground_mix)
    texture = texture_field(rng, frame, classes)
    options = ["TILED=YES", "COMPRESS=DEFLATE", "PREDICTOR=2", "PHOTOMETRIC=RGB"]
    out = gdal.GetDriverByName("GTiff").Create(
        str(path), frame.size_px, frame.size_px, 3, gdal.GDT_Byte, options=options
    )
    out.SetGeoTransform(frame.geotransform)
    out.SetSpatialRef(spatial_reference(RASTER_EPSG))
    interpretations = (gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand)
    for band, interpretation in enumerate(interpretations):
        pixels = paint_band(band, rng, classes, ground_mix, texture, shadow_only, roofs)
        target = out.GetRasterBand(band + 1)
        target.SetColorInterpretation(interpretation)
        target.WriteArray(pixels)
    out.FlushCache()
    out = None


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description=(
            "Write a deterministic synthetic aerial scene (scene.tif, EPSG:32636 RGB GeoTIFF) "
            "and matching labels (labels.gpkg, EPSG:4326: 'landcover' polygons with "
            "class_name building/water/vegetation incl. one invalid bow-tie building, and "
            "'roads' lines with width_m) into OUTDIR."
        )
    )
    parser.add_argument("outdir", metavar="OUTDIR", type=Path, help="output folder (created)")
    parser.add_argument(
        "--size", type=int, default=1024, help="raster width and height in pixels (default 1024)"
    )
    parser.add_argument(
        "--pixel-size",
        type=float,
        default=0.5,
        help="ground sampling distance in metres (default 0.5)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--origin",
        type=float,
        nargs=2,
        metavar=("X", "Y"),
        default=(ORIGIN_X, ORIGIN_Y),
        help=f"upper-left corner in EPSG:{RASTER_EPSG} metres (default {ORIGIN_X:.0f} {ORIGIN_Y:.0f}); "
        "scenes side by side share one map without overlapping labels",
    )
    args = parser.parse_args(argv)
    if args.size < 128:
        parser.error("--size must be at least 128")
    if args.pixel_size <= 0 or args.size * args.pixel_size < 100.0:
        parser.error("the scene must be at least 100 m across (--size x --pixel-size)")
    return args


def main(argv: list[str] | None = None) -> None:
    """Build the scene and write scene.tif and labels.gpkg."""
    args = parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    frame = Frame(args.size, args.pixel_size, *args.origin)
    scene = build_scene(frame, args.seed)
    image_path, labels_path = args.outdir / "scene.tif", args.outdir / "labels.gpkg"
    write_image(scene, image_path, args.seed)
    print(
        f"{image_path}: {frame.size_px}x{frame.size_px} px, 3-band Byte RGB, "
        f"{frame.pixel_size:g} m/px, EPSG:{RASTER_EPSG}"
    )
    counts = write_labels(scene, labels_path)
    print(
        f"{labels_path}: EPSG:{LABEL_EPSG}, landcover: {counts['building']} building "
        f"(1 invalid bow-tie), {counts['water']} water, {counts['vegetation']} vegetation; "
        f"roads: {counts['road']} road"
    )


if __name__ == "__main__":
    main()
