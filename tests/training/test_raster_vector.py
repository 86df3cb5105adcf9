"""RasterVectorDataModule (training/data/raster_vector.py) end to end: label rules, lazy reading, the
cache, spatial splits, nodata, and masks against the source projects' references."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
import torch

from rsdl_qgis_plugin.core.datasets.chips import ChipWindow
from rsdl_qgis_plugin.core.errors import RsdlError
from training.data import IGNORE_INDEX, RasterVectorDataModule, raster_vector, rasterize
from training.data.chip_index import RasterInfo
from training.data.vectors import read_layers


def _raster_vector(vector_scene, cache_dir, **options) -> RasterVectorDataModule:
    arguments = dict(field="kind", chip_size=32, stride=16, block_size=64, val_fraction=0.25, batch_size=4)
    arguments.update(options)
    return RasterVectorDataModule(
        str(vector_scene["raster"]), str(vector_scene["labels"]), cache_dir=str(cache_dir), **arguments
    )


def _footprints(module: RasterVectorDataModule, split: str) -> list[shapely.Polygon]:
    boxes = []
    for number, row, col in module.index["chips"][split]:
        left, top, right, bottom = module.rasters[number].footprint(ChipWindow(row, col, module.chip_size))
        boxes.append(shapely.box(left, bottom, right, top))
    return boxes


def _overlap_area(first: list, second: list) -> float:
    tree = shapely.STRtree(second)
    return sum(
        shapely.intersection(box, second[i]).area
        for box in first
        for i in tree.query(box, predicate="intersects")
    )


# -- label rules --------------------------------------------------------------------------------


def test_masks_follow_the_label_rules(vector_scene, tmp_path):
    module = _raster_vector(vector_scene, tmp_path)
    module.prepare_data()
    # text classes get 1, 2, ... in sorted order; background 0 is added (complete labels)
    assert module.class_table.values == (0, 1, 2)
    assert module.class_table.names == ("background", "building", "water")
    assert module.labels_document["report"]["repaired"] == 1  # the bow-tie
    with rasterio.open(module.mask_path(0)) as mask:
        pixels = mask.read(1)
        assert mask.nodata == 255
    assert (pixels[4:16, 4:16] == 1).all() and (pixels[70:100, 70:100] == 2).all()
    assert pixels[50, 30] == 0


def _roads_oracle(labels, raster) -> np.ndarray:
    """OGR's own: every road reprojected, buffered by half its width_m and burnt by GDAL."""
    from osgeo import gdal, ogr, osr

    grid = gdal.Open(str(raster))
    target = gdal.GetDriverByName("MEM").Create("", grid.RasterXSize, grid.RasterYSize, 1, gdal.GDT_Byte)
    target.SetGeoTransform(grid.GetGeoTransform())
    target.SetProjection(grid.GetProjection())
    utm = osr.SpatialReference(wkt=grid.GetProjection())
    dataset = ogr.Open(str(labels))  # must outlive its layer
    source = dataset.GetLayerByName("roads")
    lonlat = source.GetSpatialRef().Clone()
    lonlat.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_utm = osr.CoordinateTransformation(lonlat, utm)
    memory = ogr.GetDriverByName("Memory").CreateDataSource("")
    buffered = memory.CreateLayer("roads", utm, ogr.wkbPolygon)
    for feature in source:
        geometry = feature.GetGeometryRef().Clone()
        geometry.Transform(to_utm)
        polygon = ogr.Feature(buffered.GetLayerDefn())
        polygon.SetGeometry(geometry.Buffer(feature.GetField("width_m") / 2, 8))
        buffered.CreateFeature(polygon)
    assert gdal.RasterizeLayer(target, [1], buffered, burn_values=[1]) == 0
    return target.GetRasterBand(1).ReadAsArray().astype(bool)


def test_lines_are_burnt_at_the_width_of_their_buffer_field(sample_scene, tmp_path):
    """rsdl:rasterizelabels' BUFFER_FIELD: each road as wide as its width_m (6 or 10 m here)."""
    labels = sample_scene / "labels.gpkg"
    module = RasterVectorDataModule(
        str(sample_scene / "scene.tif"),
        f"{labels}|layername=roads",
        field="class_name",
        buffer_width=1.0,  # only for features whose width_m is NULL: none here
        buffer_field="width_m",
        chip_size=128,
        block_size=128,
        cache_dir=str(tmp_path),
    )
    module.prepare_data()
    with rasterio.open(module.mask_path(0)) as mask:
        roads = mask.read(1) == 1
    expected = _roads_oracle(labels, sample_scene / "scene.tif")
    assert roads.sum() > 0.03 * roads.size
    assert (roads != expected).mean() < 0.002  # pixel centres on the buffer's curved edge may differ
    unknown = RasterVectorDataModule(
        str(sample_scene / "scene.tif"),
        f"{labels}|layername=roads",
        buffer_field="lanes",
        cache_dir=str(tmp_path),
    )
    with pytest.raises(RsdlError, match="no field 'lanes'"):
        unknown.prepare_data()


def test_sparse_labels_ignore_unlabelled_pixels(vector_scene, tmp_path):
    module = _raster_vector(vector_scene, tmp_path, unlabelled="ignore", augment=False)
    module.setup("fit")
    assert module.class_table.values == (1, 2)  # no background class
    counts = module.index["counts"]
    assert counts["skipped_all_ignore"] > 0
    masks = torch.stack([sample["mask"] for split in ("train", "val") for sample in module.datasets[split]])
    labelled = masks != IGNORE_INDEX
    assert labelled.flatten(1).any(dim=1).all()  # every chip kept has labelled pixels...
    assert (~labelled).sum() > labelled.sum()  # ...and the unlabelled rest is ignored


def test_reading_is_lazy(vector_scene, tmp_path, monkeypatch):
    """The raster is read by strips (masks) and chip windows, never whole."""
    reads: list[tuple[str, object]] = []
    original_read, original_mask = rasterio.io.DatasetReader.read, rasterio.io.DatasetReader.dataset_mask

    def read(self, *args, window=None, **kwargs):
        reads.append((self.name, window))
        return original_read(self, *args, window=window, **kwargs)

    def dataset_mask(self, *args, window=None, **kwargs):
        reads.append((self.name, window))
        return original_mask(self, *args, window=window, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", read)
    monkeypatch.setattr(rasterio.io.DatasetReader, "dataset_mask", dataset_mask)
    monkeypatch.setattr(rasterize, "ROWS_PER_STRIP", 32)
    module = _raster_vector(vector_scene, tmp_path)
    module.setup("fit")
    module.datasets["train"][0]
    scene = [window for name, window in reads if name.endswith("scene.tif")]
    assert scene and all(window is not None for window in scene)
    assert max(int(w.height) * int(w.width) for w in scene) <= 32 * 128  # a strip, a quarter of the raster


def test_label_work_is_cached_and_reused(vector_scene, tmp_path, monkeypatch):
    first = _raster_vector(vector_scene, tmp_path)
    first.setup("fit")
    entry = first.entry_dir
    stamps = {path: path.stat().st_mtime_ns for path in entry.rglob("*") if path.is_file()}
    assert len(stamps) == 4  # one mask, labels.json, the chip index, band statistics

    def recompute(*args, **kwargs):
        raise AssertionError("recomputed despite a cache entry")

    monkeypatch.setattr(raster_vector, "write_label_mask", recompute)
    monkeypatch.setattr(raster_vector, "build_chip_index", recompute)
    monkeypatch.setattr(raster_vector, "burn_shapes", recompute)
    second = _raster_vector(vector_scene, tmp_path)
    second.setup("fit")
    assert {path: path.stat().st_mtime_ns for path in entry.rglob("*") if path.is_file()} == stamps
    assert second.index == first.index
    assert [len(d) for d in second.datasets.values()] == [len(d) for d in first.datasets.values()]
    # another label rule is another entry
    assert _raster_vector(vector_scene, tmp_path, all_touched=True).mask_key != first.mask_key


def test_split_is_spatial(vector_scene, tmp_path):
    module = _raster_vector(vector_scene, tmp_path)
    module.setup("fit")
    train, val = _footprints(module, "train"), _footprints(module, "val")
    assert train and val
    assert _overlap_area(val, train) == 0.0


def test_rasters_at_several_resolutions_share_one_spatial_split(vector_scene, raster_writer, tmp_path):
    """A coarse copy of the scene (like another zoom level) puts the same ground in the same split."""
    with rasterio.open(vector_scene["raster"]) as source:
        coarse = source.read(out_shape=(3, 64, 64))
    coarse_path = raster_writer(tmp_path / "coarse.tif", coarse, pixel_size=2.0)
    module = RasterVectorDataModule(
        [str(vector_scene["raster"]), str(coarse_path)],
        str(vector_scene["labels"]),
        field="kind",
        chip_size=32,
        block_size=64,
        val_fraction=0.25,
        cache_dir=str(tmp_path),
    )
    module.setup("fit")
    numbers = {number for number, _, _ in module.index["chips"]["train"] + module.index["chips"]["val"]}
    assert numbers == {0, 1}
    assert _overlap_area(_footprints(module, "val"), _footprints(module, "train")) == 0.0


def test_cross_validation_folds_partition_the_blocks(vector_scene, tmp_path):
    val_chips = []
    for fold in range(3):
        module = _raster_vector(vector_scene, tmp_path, stride=32, folds=3, fold=fold)
        module.prepare_data()
        assert module.index["blocks"]["test"] == 0
        val_chips.append({tuple(c) for c in module.index["chips"]["val"]})
    assert all(val_chips) and not (val_chips[0] & val_chips[1] or val_chips[1] & val_chips[2])


# -- real data: masks equal the source projects' reference masks (GDAL rasterization) ------------


def test_aber_sparse_mask_equals_the_reference(shared_data, tmp_path):
    aber = shared_data / "rsgislib_aber_s2"
    module = RasterVectorDataModule(
        str(aber / "sen2_20210527_aber_mosaic.vrt"),
        str(aber / "aber_landcover_4class_polygons.gpkg"),
        field="class_id",
        name_field="class_name",
        unlabelled="ignore",
        chip_size=64,
        block_size=192,
        cache_dir=str(tmp_path),
    )
    assert module.class_table.names == ("Forest", "Grass", "Urban", "Water")
    module.prepare_data()
    with (
        rasterio.open(module.mask_path(0)) as ours,
        rasterio.open(aber / "aber_landcover_4class_refmask.tif") as ref,
    ):
        mask, reference = ours.read(1), ref.read(1)
    np.testing.assert_array_equal(np.where(reference == 0, 255, reference), mask)
    assert module.model_spec().bands == tuple(range(1, 11)) and module.model_spec().resolution_cm == 1000.0


def test_aber_class_per_layer_equals_the_reference(shared_data, tmp_path):
    aber = shared_data / "rsgislib_aber_s2"
    layers = read_layers(str(aber / "landcover_samples_by_layer.gpkg"))
    assert [layer.name for layer in layers] == [
        "cls_forest_smpls",
        "cls_grass_smpls",
        "cls_urban_smpls",
        "cls_water_smpls",
    ]
    module = RasterVectorDataModule(
        str(aber / "sen2_20210527_aber_mosaic.vrt"),
        str(aber / "landcover_samples_by_layer.gpkg"),
        unlabelled="ignore",
        chip_size=64,
        block_size=192,
        cache_dir=str(tmp_path),
    )
    module.prepare_data()
    with (
        rasterio.open(module.mask_path(0)) as ours,
        rasterio.open(aber / "aber_landcover_4class_refmask.tif") as ref,
    ):
        np.testing.assert_array_equal(np.where(ref.read(1) == 0, 255, ref.read(1)), ours.read(1))


def test_kampala_tiles_split_by_ground_across_zoom_levels(shared_data, tmp_path):
    kampala = shared_data / "fair_kampala_buildings"
    module = RasterVectorDataModule(
        str(kampala / "tiles" / "OAM-*.tif"),
        str(kampala / "buildings.geojson"),
        burn_value=1,
        chip_size=128,
        block_size=512,
        cache_dir=str(tmp_path),
    )
    assert len(module.rasters) == 126 and module.class_table.names == ("background", "buildings")
    module.prepare_data()
    assert module.labels_document["report"]["repaired"] >= 1  # the invalid OSM polygon
    zooms = {
        RasterInfo.read(module.rasters[n].path).pixel_size[0] for n, _, _ in module.index["chips"]["val"]
    }
    assert len(zooms) == 3  # the validation ground is held out at every zoom level
    finest_pixel_area = min(r.pixel_size[0] for r in module.rasters) ** 2
    # tile edges come from float XYZ maths: only slivers far below a pixel may touch
    assert _overlap_area(_footprints(module, "val"), _footprints(module, "train")) < 0.01 * finest_pixel_area


# -- nodata: a pixel is nodata when any band read is (core/raster/nodata.py) --------------------------


def test_any_band_nodata_is_ignored_and_left_out_of_the_statistics(vector_scene, tmp_path):
    """Bands with different nodata values (a VRT: a GeoTIFF holds one for all bands) and pixels
    where only one band is nodata: the mask ignores exactly the pixels where any band is nodata,
    and the band statistics leave them out. The oracle is numpy on the pixels written."""
    from osgeo import gdal

    with rasterio.open(vector_scene["raster"]) as source:
        pixels = source.read()
    nodata = (10, 20, 30)
    rng = np.random.default_rng(3)
    for band, value in enumerate(nodata):
        pixels[band][rng.random(pixels.shape[1:]) < 0.03] = value  # ~3% of pixels, in this band only
    pixels[:, :4, :] = np.array(nodata, dtype=np.uint8)[:, None, None]  # a collar in every band
    pixels[0, 60:62, :] = 20  # band 2's nodata value in band 1: data
    expected = (pixels[0] == 10) | (pixels[1] == 20) | (pixels[2] == 30)
    one_band_only = ((pixels[0] == 10).astype(int) + (pixels[1] == 20) + (pixels[2] == 30)) == 1
    assert one_band_only.sum() > 1000  # where the any-band and every-band rules differ
    tiff = _write_raster_like(vector_scene["raster"], tmp_path / "scene.tif", pixels)
    vrt = gdal.Translate(str(tmp_path / "scene.vrt"), str(tiff), format="VRT")
    for band, value in enumerate(nodata, start=1):
        vrt.GetRasterBand(band).SetNoDataValue(value)
    vrt = None
    module = _raster_vector({"raster": tmp_path / "scene.vrt", "labels": vector_scene["labels"]}, tmp_path)
    assert module.rasters[0].nodata == nodata
    module.prepare_data()
    with rasterio.open(module.mask_path(0)) as mask:
        ignored = mask.read(1) == mask.nodata
    np.testing.assert_array_equal(ignored, expected)
    # Band statistics: over the training chips' pixels where no band is nodata.
    chips = module.index["chips"]["train"]
    assert 0 < len(chips) <= 256  # all measured
    total, count = np.zeros(3), 0
    for _, row, col in chips:
        window = (slice(row, row + 32), slice(col, col + 32))
        keep = ~expected[window]
        total += pixels[:, window[0], window[1]][:, keep].sum(axis=1) / 255.0
        count += int(keep.sum())
    np.testing.assert_allclose(module.model_spec().standardization_mean, total / count, rtol=1e-9)


def _write_raster_like(template, path, pixels: np.ndarray):
    """A GeoTIFF of ``pixels`` on ``template``'s grid, without nodata."""
    with rasterio.open(template) as source:
        profile = {**source.profile, "nodata": None}
    with rasterio.open(path, "w", **profile) as target:
        target.write(pixels)
    return path


# -- cache keys --------------------------------------------------------------------------------------


def test_the_mask_key_changes_with_a_vrt_source_or_the_labels(vector_scene, tmp_path):
    """A VRT's key follows the files it reads, not just the VRT; labels and label rules count too."""
    import os
    import shutil

    from osgeo import gdal

    source = shutil.copy(vector_scene["raster"], tmp_path / "source.tif")
    labels = shutil.copy(vector_scene["labels"], tmp_path / "labels.geojson")
    gdal.BuildVRT(str(tmp_path / "scene.vrt"), [str(source)]).FlushCache()
    inputs = {"raster": tmp_path / "scene.vrt", "labels": labels}
    first = _raster_vector(inputs, tmp_path).mask_key
    assert _raster_vector(inputs, tmp_path).mask_key == first
    assert _raster_vector(inputs, tmp_path, overlap="highest").mask_key != first
    keys = {first}
    for path in (source, labels):
        status = os.stat(path)
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000))
        keys.add(_raster_vector(inputs, tmp_path).mask_key)
    assert len(keys) == 3
