"""SageMaker job names: valid for any run id, unique per run, try and framework."""

from __future__ import annotations

import pytest

from eksml.sagemaker.request import NAME_PATTERN, sagemaker_job_name, unique_name, validate_name

RUN_IDS = [
    "manual__2026-11-29T00:00:00+00:00",
    "scheduled__2026-11-29T00:00:00+00:00",
    "backfill__2026-11-22T00:00:00+00:00",
    "asset_triggered__2026-11-29T10:11:12.123456+00:00",
    "x" * 250,
    "___",
    "ünïcode run/with spaces",
]


@pytest.mark.parametrize("run_id", RUN_IDS)
def test_names_are_valid_for_any_run_id(run_id: str) -> None:
    name = sagemaker_job_name("fashion_mnist_training", run_id, 1, "tensorflow")
    assert NAME_PATTERN.match(name), name
    assert len(name) <= 63
    assert validate_name(name) == name


def test_unique_per_run_try_and_framework_even_when_truncated() -> None:
    long_a, long_b = "r" * 200 + "a", "r" * 200 + "b"  # identical after truncation
    names = {
        sagemaker_job_name("fashion_mnist_training", run, try_number, fw)
        for run in ("manual__2026-11-29T00:00:00+00:00", "manual__2026-11-29T00:00:00.5+00:00", long_a, long_b)
        for try_number in (1, 2, 3)
        for fw in ("tensorflow", "mxnet")
    }
    assert len(names) == 4 * 3 * 2


def test_slug_collisions_are_kept_apart_by_the_hash() -> None:
    assert unique_name("dag", "a_b") != unique_name("dag", "a.b")


def test_name_is_stable_and_readable() -> None:
    name = sagemaker_job_name("fashion_mnist_training", "manual__2026-11-29T00:00:00+00:00", 2, "mxnet")
    assert name == sagemaker_job_name("fashion_mnist_training", "manual__2026-11-29T00:00:00+00:00", 2, "mxnet")
    assert name.startswith("fashion-mnist-training-mxnet-t2-manual-2026-11-29")


@pytest.mark.parametrize("bad", ["", "-a", "a-", "a_b", "a" * 64, "a.b"])
def test_invalid_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid SageMaker training job name"):
        validate_name(bad)


def test_negative_try_number_is_refused() -> None:
    with pytest.raises(ValueError, match="try_number"):
        sagemaker_job_name("d", "r", -1, "tensorflow")
