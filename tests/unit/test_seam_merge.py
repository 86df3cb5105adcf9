"""Streaming merge across tile seams (core/objects/seam_merge.py) against a one-shot greedy reference
written here, on objects cut by real tile layouts."""

from __future__ import annotations

import time

import numpy as np
import pytest
import shapely

from rsdl_qgis_plugin.core.objects.detections import Detections, InstanceMask
from rsdl_qgis_plugin.core.objects.seam_merge import SeamMerger
from rsdl_qgis_plugin.core.tiling.layouts import TileLayout, TileWindow, flush_end_starts
from rsdl_qgis_plugin.core.tiling.plan import TilePlan

# -- the one-shot reference ------------------------------------------------------------------------


def _window(tile: TileWindow, width: int, height: int) -> tuple[float, float, float, float]:
    return (
        max(tile.col, 0),
        max(tile.row, 0),
        min(tile.col + tile.size, width),
        min(tile.row + tile.size, height),
    )


def _reference_objects(tiles, detections, width, height, margin=1.0):
    """Every tile's objects in raster pixels, cut to the tile and raster, with their partial flag and
    the shapely geometry that overlaps are measured on, in arrival order."""
    out = []
    for tile, det in zip(tiles, detections):
        left, top, right, bottom = _window(tile, width, height)
        window = shapely.box(left, top, right, bottom)
        for k in range(len(det)):
            x1, y1, x2, y2 = det.boxes[k] + [tile.col, tile.row, tile.col, tile.row]
            if det.is_oriented:
                cx, cy = det.oriented[k, :2] + [tile.col, tile.row]
            else:
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            if not (0 <= cx < width and 0 <= cy < height):
                continue
            box = (max(x1, left), max(y1, top), min(x2, right), min(y2, bottom))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            if det.is_oriented:
                corners = det.corners()[k] + [tile.col, tile.row]
                geometry = shapely.Polygon(corners).intersection(window)
            else:
                geometry = shapely.box(*box)
            if geometry.area <= 0:
                continue
            partial = bool(
                (tile.col > 0 and box[0] <= tile.col + margin)
                or (tile.col + tile.size < width and box[2] >= tile.col + tile.size - margin)
                or (tile.row > 0 and box[1] <= tile.row + margin)
                or (tile.row + tile.size < height and box[3] >= tile.row + tile.size - margin)
            )
            out.append(
                {
                    "box": box,
                    "score": det.scores[k],
                    "cls": det.class_ids[k],
                    "partial": partial,
                    "geometry": geometry,
                    "centre": shapely.Point(cx, cy),
                }
            )
    return out


def _reference_merge(objects, iou_threshold, class_agnostic=False, contained=0.5):
    """The greedy rule applied to all objects at once."""
    order = sorted(range(len(objects)), key=lambda i: (objects[i]["partial"], -objects[i]["score"], i))
    kept = []
    for i in order:
        o = objects[i]
        dropped = False
        for k in kept:
            if not class_agnostic and k["cls"] != o["cls"]:
                continue
            inter = k["geometry"].intersection(o["geometry"]).area
            if inter <= 0:
                continue
            iou = inter / (k["geometry"].area + o["geometry"].area - inter)
            held = o["partial"] and (
                inter / o["geometry"].area >= contained or k["geometry"].covers(o["centre"])
            )
            if iou > iou_threshold or held:
                dropped = True
                break
        if not dropped:
            kept.append(o)
    return kept


def _rows(objects) -> np.ndarray:
    """Comparable rows (box, score, class, partial), sorted."""
    rows = np.array([[*o["box"], o["score"], o["cls"], o["partial"]] for o in objects]).reshape(-1, 7)
    return rows[np.lexsort(rows.T[::-1])]


def _detection_rows(det: Detections) -> np.ndarray:
    rows = np.column_stack([det.boxes, det.scores, det.class_ids, det.partial]).reshape(-1, 7)
    return rows[np.lexsort(rows.T[::-1])]


# -- generated scenes ------------------------------------------------------------------------------


def _random_scene(rng, width, height, count, oriented=False):
    """Objects as boxes (or oriented boxes), some centred just outside the raster (as mirrored
    objects in padding would be)."""
    centres = np.column_stack([rng.uniform(-10, width + 10, count), rng.uniform(-10, height + 10, count)])
    sizes = rng.uniform(3, 40, (count, 2))
    classes = rng.integers(0, 3, count)
    scores = rng.uniform(0.3, 1.0, count)
    if oriented:
        return np.column_stack([centres, sizes, rng.uniform(-np.pi, np.pi, count)]), classes, scores
    return np.column_stack([centres - sizes / 2, centres + sizes / 2]), classes, scores


def _cut_to_tile(rng, tile, shapes, classes, scores, oriented=False):
    """What a detector would see in the tile: each object touching the tile, cut to the tile (pieces
    at edges), slightly jittered, some missed, in tile pixels."""
    offset = np.array([tile.col, tile.row, tile.col, tile.row], dtype=np.float64)
    if not oriented:
        window = offset + np.array([0, 0, tile.size, tile.size])
        cut = np.column_stack([np.maximum(shapes[:, :2], window[:2]), np.minimum(shapes[:, 2:], window[2:])])
        seen = (
            (cut[:, 2] - cut[:, 0] > 1) & (cut[:, 3] - cut[:, 1] > 1) & (rng.uniform(size=len(shapes)) > 0.1)
        )
        picks = np.flatnonzero(seen)
        boxes = cut[picks] + rng.normal(0, 0.3, (len(picks), 4)) - offset
        return Detections(boxes, scores[picks] * rng.uniform(0.9, 1.0, len(picks)), classes[picks])
    window = shapely.box(tile.col, tile.row, tile.col + tile.size, tile.row + tile.size)
    picks, obbs = [], []
    for k, shape in enumerate(shapes):
        corners = Detections.from_oriented(shape[None], [1.0], [0]).corners()[0]
        piece = shapely.Polygon(corners).intersection(window)
        if piece.area <= 1 or rng.uniform() < 0.1:
            continue
        rect = np.asarray(piece.minimum_rotated_rectangle.exterior.coords)[:4]
        w_vec, h_vec = rect[1] - rect[0], rect[2] - rect[1]
        obb = [*rect.mean(axis=0), np.hypot(*w_vec), np.hypot(*h_vec), np.arctan2(w_vec[1], w_vec[0])]
        obbs.append(np.asarray(obb) + np.array([*rng.normal(0, 0.3, 4), 0]))
        picks.append(k)
    picks = np.asarray(picks, dtype=np.int64)
    obb = np.asarray(obbs).reshape(-1, 5) - [tile.col, tile.row, 0, 0, 0]
    return Detections.from_oriented(obb, scores[picks] * rng.uniform(0.9, 1.0, len(picks)), classes[picks])


def _stream(merger: SeamMerger, tiles, detections, rng) -> tuple[Detections, int]:
    """Add the tiles in batches of random size, releasing after each batch; the merged objects and
    the most objects held at once."""
    parts, most, position = [], 0, 0
    while position < len(tiles):
        batch = int(rng.integers(1, 6))
        for tile, det in zip(tiles[position : position + batch], detections[position : position + batch]):
            merger.add(tile, det)
            most = max(most, merger.pending)
        position += batch
        if position < len(tiles):
            parts.append(merger.release(tiles[position].row))
    parts.append(merger.finish())
    assert merger.pending == 0
    return Detections.concatenate([p for p in parts if len(p)] or [Detections.empty()]), most


def _layout(kind: str, width: int, height: int, tile_size: int, overlap: int) -> TileLayout:
    if kind == "plan":
        return TilePlan(width, height, tile_size, overlap)
    return TileLayout(width, height, tile_size, tile_size - overlap, flush_end_starts)


# -- (a) streaming equals the one-shot rule --------------------------------------------------------


@pytest.mark.parametrize("seed", range(24))
def test_streaming_merge_equals_the_one_shot_greedy_rule(seed: int) -> None:
    rng = np.random.default_rng(seed)
    width, height = int(rng.integers(120, 260)), int(rng.integers(120, 320))
    tile_size = int(rng.integers(48, 100))
    overlap = int(rng.integers(0, tile_size // 2))
    kind = "plan" if seed % 2 else "flush"
    layout = _layout(kind, width, height, tile_size, overlap)
    tiles = list(layout)
    shapes, classes, scores = _random_scene(rng, width, height, int(rng.integers(20, 90)))
    detections = [_cut_to_tile(rng, tile, shapes, classes, scores) for tile in tiles]
    iou, agnostic = float(rng.choice([0.3, 0.5, 0.7])), bool(seed % 3 == 0)

    merged, _ = _stream(SeamMerger(width, height, iou, class_agnostic=agnostic), tiles, detections, rng)
    expected = _reference_merge(_reference_objects(tiles, detections, width, height), iou, agnostic)
    np.testing.assert_allclose(_detection_rows(merged), _rows(expected), atol=1e-9)
    assert len(merged) > 0
    # Every kept box lies inside the raster.
    assert (merged.boxes[:, :2] >= 0).all() and (merged.boxes[:, 2] <= width).all()
    assert (merged.boxes[:, 3] <= height).all()


@pytest.mark.parametrize("seed", range(8))
def test_streaming_merge_of_oriented_boxes_equals_the_one_shot_rule(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    width, height = int(rng.integers(120, 200)), int(rng.integers(120, 240))
    tile_size, overlap = int(rng.integers(48, 90)), int(rng.integers(0, 24))
    layout = _layout("plan" if seed % 2 else "flush", width, height, tile_size, overlap)
    tiles = list(layout)
    shapes, classes, scores = _random_scene(rng, width, height, int(rng.integers(15, 50)), oriented=True)
    detections = [_cut_to_tile(rng, tile, shapes, classes, scores, oriented=True) for tile in tiles]
    # Oriented pieces reach beyond their tile; the merge measures them cut to it.
    assert any((d.boxes < 0).any() or (d.boxes > tile_size).any() for d in detections if len(d))

    merged, _ = _stream(SeamMerger(width, height, 0.5), tiles, detections, rng)
    expected = _reference_merge(_reference_objects(tiles, detections, width, height), 0.5)
    np.testing.assert_allclose(_detection_rows(merged), _rows(expected), atol=1e-9)
    assert merged.is_oriented and len(merged) > 0


# -- (b) objects at seams and corners --------------------------------------------------------------


def _two_by_two() -> tuple[int, int, list[TileWindow]]:
    # Tiles of 100 px every 60 px: columns and rows 0..100 and 60..160 on a 160 x 160 raster.
    layout = TileLayout(160, 160, 100, 60, flush_end_starts)
    return 160, 160, list(layout)


def _seen_by(tile: TileWindow, box, score: float, cls: int = 0) -> Detections:
    """A box in raster pixels as the tile's detector reports it: cut to the tile, in tile pixels."""
    x1, y1 = max(box[0], tile.col), max(box[1], tile.row)
    x2, y2 = min(box[2], tile.col + tile.size), min(box[3], tile.row + tile.size)
    return Detections(
        np.array([[x1 - tile.col, y1 - tile.row, x2 - tile.col, y2 - tile.row]]), [score], [cls]
    )


def _merge_all(width, height, tiles, detections, **options) -> Detections:
    merger = SeamMerger(width, height, **{"iou_threshold": 0.5, **options})
    parts = []
    for tile, det in zip(tiles, detections):
        merger.add(tile, det)
    parts.append(merger.finish())
    return Detections.concatenate(parts)


def test_an_object_cut_by_a_seam_is_kept_once_whole() -> None:
    width, height, tiles = _two_by_two()
    top_left, top_right = tiles[0], tiles[1]
    across = (85.0, 20.0, 115.0, 40.0)  # whole in the right tile, cut by the left tile's edge
    in_both = (70.0, 50.0, 90.0, 70.0)  # whole in both tiles
    # The cut piece scores higher than the whole object; it must still lose.
    detections = [
        Detections.concatenate([_seen_by(top_left, across, 0.95), _seen_by(top_left, in_both, 0.8)]),
        Detections.concatenate([_seen_by(top_right, across, 0.7), _seen_by(top_right, in_both, 0.85)]),
    ]
    merged = _merge_all(width, height, tiles[:2], detections)
    rows = _detection_rows(merged)
    np.testing.assert_allclose(rows[:, :4], [[70, 50, 90, 70], [85, 20, 115, 40]])
    np.testing.assert_allclose(rows[:, 4], [0.85, 0.7])
    assert not merged.partial.any()


def test_an_object_at_a_four_tile_corner_is_kept_once_whole() -> None:
    width, height, tiles = _two_by_two()
    corner = (90.0, 85.0, 112.0, 115.0)  # whole only in the bottom-right tile (60..160 both ways)
    detections = [_seen_by(tile, corner, score) for tile, score in zip(tiles, (0.99, 0.98, 0.97, 0.6))]
    merger = SeamMerger(width, height, 0.5)
    for tile, det in zip(tiles, detections):
        merger.add(tile, det)
    assert merger.pending == 4
    merged = merger.finish()
    assert len(merged) == 1
    np.testing.assert_allclose(merged.boxes, [corner])
    assert merged.scores[0] == 0.6 and not merged.partial[0]


def test_pieces_of_an_object_wider_than_the_overlap_leave_the_best_piece() -> None:
    # No tile holds the object whole: both pieces are partial, and the right one, half inside the
    # left one (IoU 1/3 only), is dropped: the left one holds its centre.
    width, height, tiles = _two_by_two()
    wide = (20.0, 20.0, 140.0, 40.0)
    detections = [_seen_by(tiles[0], wide, 0.9), _seen_by(tiles[1], wide, 0.8)]
    merged = _merge_all(width, height, tiles[:2], detections)
    assert merged.partial.all()
    np.testing.assert_allclose(merged.boxes, [[20, 20, 100, 40]])
    held_centre = _merge_all(width, height, tiles[:2], detections, contained_fraction=0.9)
    assert len(held_centre) == 1


def test_objects_outside_the_raster_are_dropped_and_boxes_clipped() -> None:
    tile = TileWindow(0, -10, -10, 64)  # overhangs the raster's top-left corner
    boxes = np.array(
        [
            [0.0, 0, 8, 8],  # centre (-6, -6) in raster pixels: a mirrored object, dropped
            [5, 5, 30, 30],  # reaches outside: clipped to (0, 0, 20, 20)
            [20, 20, 40, 90],  # reaches past the tile's bottom: clipped to the tile
        ]
    )
    merger = SeamMerger(100, 100, 0.5)
    merger.add(tile, Detections(boxes, [0.9, 0.8, 0.7], [0, 0, 0]))
    merged = merger.finish()
    np.testing.assert_allclose(merged.boxes, [[0, 0, 20, 20], [10, 10, 30, 54]])
    # The tile's bottom (54) and right (54) edges are inner edges; the top and left lie outside.
    np.testing.assert_array_equal(merged.partial, [False, True])


# -- (c) classes -----------------------------------------------------------------------------------


def test_class_aware_and_class_agnostic_merging() -> None:
    width, height, tiles = _two_by_two()
    top_left, bottom_right = tiles[0], tiles[3]
    # In the bottom-right tile (rows and columns 60..160): two whole objects of classes 0 and 1 that
    # overlap with IoU 0.875, and one more of class 0 apart.
    whole = Detections(
        np.array([[10.0, 10, 40, 40], [12, 10, 42, 40], [70, 70, 90, 90]]), [0.9, 0.8, 0.7], [0, 1, 0]
    )
    # The top-left tile's piece of the first object, reported as class 2 with a higher score.
    piece = _seen_by(top_left, (70.0, 70.0, 100.0, 100.0), 0.95, cls=2)
    aware = _merge_all(width, height, [top_left, bottom_right], [piece, whole])
    agnostic = _merge_all(width, height, [top_left, bottom_right], [piece, whole], class_agnostic=True)
    assert sorted(aware.scores.tolist()) == [0.7, 0.8, 0.9, 0.95]
    assert sorted(agnostic.scores.tolist()) == [0.7, 0.9]


# -- (d) oriented boxes and masks travel with their objects ----------------------------------------


def test_oriented_boxes_keep_their_geometry_and_boxes_are_clipped() -> None:
    width, height, tiles = _two_by_two()
    oriented = np.array([[30.0, 30, 30, 10, 0.5], [95, 30, 30, 10, 0.3]])  # the second crosses x = 100
    det = Detections.from_oriented(oriented, [0.9, 0.8], [0, 0])
    merger = SeamMerger(width, height, 0.5)
    merger.add(tiles[0], det)
    merged = merger.finish()
    np.testing.assert_allclose(merged.oriented, oriented)
    assert merged.boxes[1, 2] == 100.0  # the enclosing box is cut at the tile's edge
    np.testing.assert_array_equal(merged.partial, [False, True])


def test_oriented_boxes_shift_with_their_tile() -> None:
    tile = TileWindow(0, 60, 60, 100)
    det = Detections.from_oriented(np.array([[20.0, 20, 10, 4, 0.2]]), [0.9], [2])
    merger = SeamMerger(160, 160, 0.5)
    merger.add(tile, det)
    merged = merger.finish()
    np.testing.assert_allclose(merged.oriented, [[80, 80, 10, 4, 0.2]])
    assert merged.class_ids.tolist() == [2]


def test_masks_travel_with_their_objects_and_lose_pixels_outside_the_raster() -> None:
    tile = TileWindow(0, -4, 50, 32)  # rows -4..28 and columns 50..82 of a 60 x 100 raster
    rng = np.random.default_rng(0)
    inside, cut, beyond = (
        rng.uniform(size=(6, 5)) > 0.3,
        rng.uniform(size=(8, 6)) > 0.3,
        np.ones((3, 3), bool),
    )
    masks = [InstanceMask(2, 2, inside), InstanceMask(0, 6, cut), InstanceMask(20, 20, beyond)]
    boxes = np.array(
        [
            [2.0, 2, 7, 8],  # raster rows -2..4: its top two rows lie outside
            [6, 0, 12, 8],  # raster rows -4..4, columns 56..62: cut at the top and on the right
            [20, 20, 23, 23],  # centred beyond the raster's right edge: dropped
        ]
    )
    merger = SeamMerger(60, 100, 0.5)
    merger.add(tile, Detections(boxes, [0.5, 0.9, 0.7], [0, 1, 2], masks=masks))
    merged = merger.finish()
    assert merged.class_ids.tolist() == [1, 0]  # by score
    np.testing.assert_allclose(merged.boxes, [[56, 0, 60, 4], [52, 0, 57, 4]])
    first, second = merged.masks[1], merged.masks[0]
    assert (first.row0, first.col0) == (0, 52)
    np.testing.assert_array_equal(first.mask, inside[2:])
    assert (second.row0, second.col0) == (0, 56)
    np.testing.assert_array_equal(second.mask, cut[4:, :4])
    assert not merged.partial.any()


def test_masks_of_a_whole_object_survive_its_partial_piece() -> None:
    width, height, tiles = _two_by_two()
    box = (85.0, 20.0, 115.0, 40.0)
    mask = np.ones((20, 30), bool)
    piece = Detections(
        np.array([[85.0, 20, 100, 40]]), [0.9], [0], masks=[InstanceMask(20, 85, mask[:, :15])]
    )
    whole = Detections(np.array([[25.0, 20, 55, 40]]), [0.6], [0], masks=[InstanceMask(20, 25, mask)])
    merged = _merge_all(width, height, tiles[:2], [piece, whole])
    np.testing.assert_allclose(merged.boxes, [box])
    assert (merged.masks[0].row0, merged.masks[0].col0, merged.masks[0].mask.shape) == (20, 85, (20, 30))


# -- (e) memory ------------------------------------------------------------------------------------


def test_objects_held_stay_within_a_band_of_tile_rows() -> None:
    rng = np.random.default_rng(5)
    width, height = 256, 4096
    layout = TilePlan(width, height, 64, 16)
    tiles = list(layout)
    shapes, classes, scores = _random_scene(rng, width, height, 2500)
    merger = SeamMerger(width, height, 0.5)
    per_row, held, parts = [], [], []
    for tile_row in range(layout.n_tile_rows):
        row_tiles = tiles[tile_row * layout.n_tile_cols : (tile_row + 1) * layout.n_tile_cols]
        added = 0
        for tile in row_tiles:
            det = _cut_to_tile(rng, tile, shapes, classes, scores)
            added += len(det)
            merger.add(tile, det)
        per_row.append(added)
        held.append(merger.pending)
        if tile_row + 1 < layout.n_tile_rows:
            parts.append(merger.release(layout.tile_row_starts[tile_row + 1]))
    parts.append(merger.finish())
    assert layout.n_tile_rows > 80
    assert max(held) < 3 * np.median(per_row)
    # Flat: the band at the end holds no more than the band at the start.
    assert max(held[-20:]) < 1.5 * max(held[:20])
    assert sum(len(p) for p in parts) > 2000


# -- (f) merge time --------------------------------------------------------------------------------


def test_merge_time_per_thousand_objects(capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(11)
    width = height = 2048
    layout = TilePlan(width, height, 512, 64)
    tiles = list(layout)
    shapes, classes, scores = _random_scene(rng, width, height, 1000)
    detections = [_cut_to_tile(rng, tile, shapes, classes, scores) for tile in tiles]
    start = time.perf_counter()
    merger = SeamMerger(width, height, 0.5)
    parts = []
    for index, (tile, det) in enumerate(zip(tiles, detections)):
        merger.add(tile, det)
        if (index + 1) % layout.n_tile_cols == 0 and index + 1 < len(tiles):
            parts.append(merger.release(tiles[index + 1].row))
    parts.append(merger.finish())
    elapsed = time.perf_counter() - start
    kept = sum(len(p) for p in parts)
    with capsys.disabled():
        print(
            f"\nseam merge: {sum(len(d) for d in detections)} tile detections of 1000 objects "
            f"over {len(tiles)} tiles -> {kept} objects in {elapsed * 1000:.1f} ms"
        )
    assert 900 < kept <= 1100
