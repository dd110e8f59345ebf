"""Run parameters: the schema the trigger form shows and the first task's checks."""

from __future__ import annotations

import pytest

from eksml.params import PARAM_SCHEMAS, ParamsError, validate_training_params


def test_defaults_are_valid_and_typed():
    params = validate_training_params({})
    assert params.framework == "tensorflow" and params.learning_rate == 0.001
    # Epochs and batch size default to each framework's recipe: the image's own defaults.
    assert params.epochs is None and params.batch_size is None
    assert params.frameworks == ("tensorflow",)
    assert validate_training_params({"framework": "both"}).frameworks == ("tensorflow", "mxnet")


def test_every_param_is_documented_for_the_form():
    for name, schema in PARAM_SCHEMAS.items():
        assert schema.get("title") and schema.get("description"), name
        assert "type" in schema, name
        assert (
            "enum" in schema
            or "minimum" in schema
            or "exclusiveMinimum" in schema
            or schema["type"] in ("boolean", ["null", "string"])
        ), f"{name} has no bounds"


@pytest.mark.parametrize(
    "conf, message",
    [
        ({"epochs": 0}, "'epochs' must be >= 1"),
        ({"learning_rate": -0.1}, "'learning_rate' must be > 0"),
        ({"framework": "pytorch"}, "'framework' must be one of"),
        ({"batch_size": "128"}, "'batch_size' must be of type integer"),
        ({"epochs": True}, "'epochs' must be of type integer"),
        ({"data_uri": "http://example.com/x"}, "'data_uri' must be an absolute path"),
        ({"bogus": 1}, "unknown param(s): bogus"),
        ({"trainer": "sagemaker", "cluster": "ephemeral"}, "ephemeral makes no sense"),
    ],
)
def test_bad_values_name_the_param(conf, message):
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_training_params(conf)


def test_airflow_param_schema_refuses_bad_value():
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamValidationError  # noqa: F401 - import proves location

    from eksml.params import airflow_params

    params = airflow_params()
    assert isinstance(params["epochs"], Param)
    with pytest.raises(Exception, match="minimum|less than"):
        params["epochs"].resolve(0)
    assert params["framework"].resolve("mxnet") == "mxnet"


def test_integral_floats_are_integers_as_json_schema_counts_them():
    """The form and REST API accept ``epochs: 2.0`` (JSON Schema integer); so does the first task."""
    params = validate_training_params({"epochs": 2.0, "batch_size": 64.0})
    assert (params.epochs, params.batch_size) == (2, 64) and isinstance(params.epochs, int)
    with pytest.raises(ParamsError, match="'epochs' must be of type integer or empty, got 2.5"):
        validate_training_params({"epochs": 2.5})


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers_are_named_as_such(value):
    with pytest.raises(ParamsError, match=f"'learning_rate' must be a finite number, got {value!r}"):
        validate_training_params({"learning_rate": value})


@pytest.mark.parametrize("uri", ["s3://bucket/../../x", "s3://bucket/a/./b", "/data/../etc", "file:///a/.."])
def test_dot_segments_in_data_uri_are_refused(uri):
    with pytest.raises(ParamsError, match="must not contain '.' or '..' path segments"):
        validate_training_params({"data_uri": uri})


def test_unset_epochs_and_batch_size_leave_the_images_defaults():
    """Empty params pass no --epochs / --batch-size, so each image's recipe decides; set ones are passed."""
    from eksml.specs import training_spec

    places = {"data_uri": "file:///d", "model_uri": "file:///m", "checkpoint_uri": "file:///c"}
    unset = training_spec(framework="tensorflow", epochs=None, batch_size=None, learning_rate=0.001, **places)
    assert dict(unset.hyperparameters) == {"learning_rate": 0.001}
    chosen = training_spec(framework="mxnet", epochs=3, batch_size=64, learning_rate=0.002, **places)
    assert dict(chosen.hyperparameters) == {"epochs": 3, "batch_size": 64, "learning_rate": 0.002}
