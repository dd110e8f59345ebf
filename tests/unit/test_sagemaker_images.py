"""The SageMaker DLC table: the EKS image's TensorFlow, patched releases, and preflight's finding."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from eksml import preflight
from eksml.params import validate_training_params
from eksml.sagemaker.images import DEEP_LEARNING_CONTAINERS, training_image_uri
from eksml.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 12, 7)


def _settings(**kw) -> Settings:
    return Settings(**{"profile": "aws", "store_uri": "s3://b-1/ml", "region": "us-west-2", **kw})


def test_tensorflow_dlc_is_the_eks_images_release():
    eks = re.search(
        r"^ARG BASE_IMAGE=tensorflow/tensorflow:(\d+\.\d+)",
        (ROOT / "images/tf-fashion-mnist/Dockerfile").read_text(),
        re.M,
    )
    tf = DEEP_LEARNING_CONTAINERS["tensorflow"]
    assert eks and tf.gpu_tag.startswith(eks.group(1) + ".") and tf.cpu_tag.startswith(eks.group(1) + ".")
    assert tf.supported_on(DAY)


def test_preflight_finds_each_frameworks_dlc():
    params = validate_training_params(
        {"trainer": "sagemaker", "framework": "both", "sagemaker_instance_type": "ml.g5.xlarge"}
    )
    found = {
        f.message.split(" ")[0].split(":")[0]: f for f in preflight.check_sagemaker_images(_settings(), params, DAY)
    }
    tf = training_image_uri("tensorflow", "us-west-2", gpu=True)
    assert found[tf.split(":")[0]].level == preflight.OK and "2027-07-10" in found[tf.split(":")[0]].message
    mx = [f for f in found.values() if "mxnet-training" in f.message]
    assert mx and mx[0].level == preflight.ERROR and "no patched mxnet DLC" in mx[0].message
    assert "EKSML_SAGEMAKER_ALLOW_UNPATCHED_IMAGES=true" in mx[0].fix


def test_an_unpatched_dlc_is_a_warning_once_the_user_accepts_it():
    params = validate_training_params({"trainer": "sagemaker", "framework": "mxnet"})
    (finding,) = preflight.check_sagemaker_images(_settings(sagemaker_allow_unpatched_images=True), params, DAY)
    assert finding.level == preflight.WARNING


def test_a_release_past_its_end_of_patch_is_refused():
    params = validate_training_params({"trainer": "sagemaker", "framework": "tensorflow"})
    (finding,) = preflight.check_sagemaker_images(_settings(), params, dt.date(2027, 7, 11))
    assert finding.level == preflight.ERROR and "end of patch 2027-07-10" in finding.message


def test_a_region_without_dlcs_is_refused():
    params = validate_training_params({"trainer": "sagemaker", "framework": "tensorflow"})
    (finding,) = preflight.check_sagemaker_images(_settings(region="mars-north-1"), params, DAY)
    assert finding.level == preflight.ERROR and "mars-north-1" in finding.message
