"""Defaults a person reads (trigger forms, command-line help) are the ones the code applies.

Each default has one home (``trainkit.contract`` for training, ``eksml.cluster.request`` for
node-group sizes); these check that the places which show it agree with what runs.
"""

from __future__ import annotations

import re

import pytest
from project_files import load_dag

from eksml.cluster import eksctl as eksctl_cli
from eksml.cluster.request import ClusterRequest
from eksml.params import PARAM_SCHEMAS, TrainingParams
from eksml.settings import Settings
from trainkit.cli import parse_args


def test_the_image_entrypoints_default_to_the_training_forms_values(monkeypatch):
    monkeypatch.delenv("SM_HPS", raising=False)
    args = parse_args(["--data-uri", "/d", "--model-uri", "/m"])
    form = TrainingParams()
    assert (args.epochs, args.batch_size, args.learning_rate) == (form.epochs, form.batch_size, form.learning_rate)
    for name in ("epochs", "batch_size", "learning_rate"):
        assert PARAM_SCHEMAS[name]["default"] == getattr(form, name)


def test_the_upstream_trigger_keeps_the_training_forms_epoch_bounds():
    epochs = load_dag("trigger_training_with_conf", "upstream_data_landing.py").params.get_param("epochs").schema
    assert (epochs["minimum"], epochs["maximum"]) == (
        PARAM_SCHEMAS["epochs"]["minimum"],
        PARAM_SCHEMAS["epochs"]["maximum"],
    )


def test_the_cluster_forms_sizes_are_the_requests():
    params = load_dag("eks_cluster").params
    request = ClusterRequest.from_settings(Settings(store_uri="s3://bucket/eksml"))
    assert params["train_nodes"] == request.train_nodes
    assert params["train_max_nodes"] == request.train_max_size
    assert params["inference_nodes"] == request.inference_nodes


@pytest.mark.parametrize("option, field", [("--train-nodes", "train_nodes"), ("--inference-nodes", "inference_nodes")])
def test_the_eksctl_clis_help_states_the_requests_defaults(option, field):
    """``--train-nodes`` once said "default 1" while a request got 0 nodes."""
    (action,) = [
        a
        for a in eksctl_cli._parser()._subparsers._group_actions[0].choices["render"]._actions
        if option in a.option_strings
    ]
    shown = re.search(r"\(default (\d+)\)", action.help)
    request = ClusterRequest.from_settings(Settings(store_uri="s3://bucket/eksml"))
    assert shown and int(shown.group(1)) == getattr(request, field)
