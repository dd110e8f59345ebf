"""The training-data event contract, and landing a drop that announces itself with it."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from eksml.assets import DataEventError, data_event_extra, validate_data_event_extra


@pytest.mark.parametrize(
    "extra, uri",
    [
        (None, None),
        ({}, None),
        ({"from_rest_api": True}, None),
        ({"uri": "/data/drops/1"}, "/data/drops/1"),
        ({"uri": "file:///data/drops/1", "from_rest_api": True}, "file:///data/drops/1"),
        ({"uri": "s3://my-bucket/drops/2026-11-29"}, "s3://my-bucket/drops/2026-11-29"),
    ],
)
def test_valid_extras(extra, uri):
    assert validate_data_event_extra(extra) == uri


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"uri": 5}, "'uri' must be a string, got int: 5"),
        ({"uri": None}, "'uri' must be a string, got NoneType"),
        ({"uri": ""}, "must be an absolute path"),
        ({"uri": "relative/dir"}, "got 'relative/dir'"),
        ({"uri": "http://example.com/data"}, "got 'http://example.com/data'"),
        ({"uri": "s3://B/upper-case-bucket"}, "s3://bucket/"),
        ({"uri": "/" + "x" * 2000}, "at most 1024 characters"),
        (["uri", "/data"], "must be a JSON object, got list"),
        ("/data", "must be a JSON object, got str"),
    ],
)
def test_malformed_extras_are_refused_with_the_reason(extra, message):
    with pytest.raises(DataEventError, match="training-data event extra") as caught:
        validate_data_event_extra(extra)
    assert message in str(caught.value)


def test_data_event_extra_refuses_what_it_would_not_accept():
    assert data_event_extra("/data/x", train_images=10) == {"uri": "/data/x", "train_images": 10}
    with pytest.raises(DataEventError):
        data_event_extra("data/x")


def test_land_drop_copies_validated_files_and_describes_them(tmp_path, dataset_dir):
    from eksml.assets import land_drop
    from eksml.settings import load_settings

    settings = load_settings({"store_uri": (tmp_path / "store").as_uri(), "source_data_uri": str(dataset_dir)})
    extra = land_drop(settings, datetime(2026, 11, 29, 2, 30, tzinfo=timezone.utc))
    landed = tmp_path / "store" / "landing" / "20261129T023000"
    assert extra == {"uri": landed.as_uri(), "source": str(dataset_dir), "train_images": 60000, "test_images": 10000}
    assert sorted(p.name for p in landed.iterdir()) == [
        "manifest.json",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]
    assert validate_data_event_extra(extra) == landed.as_uri()


def test_land_drop_refuses_a_bad_source_before_copying(tmp_path):
    from eksml.assets import land_drop
    from eksml.dataprep import DataValidationError
    from eksml.settings import load_settings

    empty = tmp_path / "empty"
    empty.mkdir()
    settings = load_settings({"store_uri": (tmp_path / "store").as_uri()})
    with pytest.raises(DataValidationError, match="no Fashion-MNIST IDX files"):
        land_drop(settings, datetime(2026, 11, 29, tzinfo=timezone.utc), str(empty))
    assert not (tmp_path / "store" / "landing").exists()


def test_an_event_uri_leaving_its_prefix_is_refused():
    with pytest.raises(DataEventError, match="must not contain '.' or '..' path segments"):
        validate_data_event_extra({"uri": "s3://bucket/drops/../../x"})
