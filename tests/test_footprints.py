"""STAC footprints in WGS84 (pure: pyproj and shapely only): ordinary scenes, scenes
across the antimeridian (cut, west > east), touching it, round a pole, and outlines
that are not on Earth (metres tagged as degrees)."""

from __future__ import annotations

import pytest
import shapely.geometry
from pyproj import CRS

from chunkstore import InputError, footprint_wgs84


def fp(epsg, transform, shape):
    geom, bbox = footprint_wgs84(CRS.from_epsg(epsg).to_wkt(), transform, shape)
    assert shapely.geometry.shape(geom).is_valid
    assert -180 <= bbox[0] <= 180 and -180 <= bbox[2] <= 180
    assert -90 <= bbox[1] <= bbox[3] <= 90
    return geom, bbox


def test_ordinary_scene_is_one_polygon_inside_its_bbox():
    geom, bbox = fp(32633, (10, 0, 500000, 0, -10, 5000000), (1000, 1000))
    assert geom["type"] == "Polygon" and bbox[0] < bbox[2]
    assert shapely.geometry.box(*bbox).contains(shapely.geometry.shape(geom))
    assert bbox == pytest.approx([14.999999, 45.0634, 15.1272, 45.1535], abs=1e-4)


@pytest.mark.parametrize("epsg, transform, shape", [
    (32660, (10, 0, 600000, 0, -10, 6700000), (1000, 20000)),  # UTM 60N: 178.8 E..177.6 W
    (4326, (0.01, 0, 179.5, 0, -0.01, 10), (100, 100)),         # degrees past 180
])
def test_across_the_antimeridian_is_cut_and_west_exceeds_east(epsg, transform, shape):
    geom, (w, s, e, n) = fp(epsg, transform, shape)
    assert geom["type"] == "MultiPolygon" and w > e
    parts = sorted(p.bounds for p in shapely.geometry.shape(geom).geoms)
    assert parts[0][0] == -180 and parts[1][2] == 180
    assert parts[1][0] == pytest.approx(w, abs=1e-5) and parts[0][2] == pytest.approx(e, abs=1e-5)


@pytest.mark.parametrize("west", [179.0, -180.0])
def test_touching_the_antimeridian_is_not_cut(west):
    geom, (w, s, e, n) = fp(4326, (0.01, 0, west, 0, -0.01, 10), (100, 100))
    assert geom["type"] == "Polygon" and w < e and e - w == pytest.approx(1.0, abs=1e-4)


def test_round_a_pole_is_the_box_to_the_pole():
    geom, bbox = fp(3031, (1000, 0, -100000, 0, -1000, 100000), (200, 200))
    assert bbox[0] == -180 and bbox[2] == 180 and bbox[1] == -90 and -89 < bbox[3] < -88


@pytest.mark.parametrize("epsg, transform", [
    (4326, (10, 0, 500000, 0, -10, 5000000)),   # UTM metres tagged as degrees
    (4326, (0.01, 0, 10, 0, -0.01, 95)),        # latitude past the pole
])
def test_outline_not_on_earth_is_refused(epsg, transform):
    with pytest.raises(InputError, match="not on Earth .*set the right one"):
        footprint_wgs84(CRS.from_epsg(epsg).to_wkt(), transform, (100, 100))
