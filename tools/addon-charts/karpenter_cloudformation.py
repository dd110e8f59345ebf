"""Extract from Karpenter's getting-started CloudFormation template what the pipeline creates itself.

Usage: python tools/addon-charts/karpenter_cloudformation.py cloudformation.yaml > getting-started-resources.json

The template (``website/content/en/preview/getting-started/getting-started-with-karpenter/cloudformation.yaml``
of github.com/aws/karpenter-provider-aws, the file the guide's step 3 downloads at its release tag)
is read and its parts written as JSON, each as published: the controller's managed policies (the
documents of the ``!Sub`` strings), the nodes' role, the interruption queue, its policy and the
EventBridge rules. CloudFormation's ``${...}`` references stay as they are;
``eksml.cluster.karpenter_aws`` fills them in per cluster.
"""

from __future__ import annotations

import json
import sys

import yaml


class _Template(yaml.SafeLoader):
    """YAML with CloudFormation's short-form functions read as ``{"Fn": value}``."""


def _function(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node)}
    return {suffix: loader.construct_mapping(node)}


_Template.add_multi_constructor("!", _function)


def _sub(value: object) -> object:
    """``!Sub`` strings as their text, ``!GetAtt X.Arn`` as ``${X.Arn}`` (the ``!Sub`` form)."""
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Sub":
            return arg
        if fn == "GetAtt":
            return "${" + arg + "}"
    if isinstance(value, dict):
        return {k: _sub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_sub(v) for v in value]
    return value


def extract(template: dict) -> dict:
    resources = template["Resources"]
    by_type: dict[str, dict] = {}
    for name, resource in resources.items():
        by_type.setdefault(resource["Type"], {})[name] = resource["Properties"]
    policies = {
        props["ManagedPolicyName"]["Sub"]: json.loads(props["PolicyDocument"]["Sub"])
        for props in by_type["AWS::IAM::ManagedPolicy"].values()
    }
    (role,) = by_type["AWS::IAM::Role"].values()
    (queue,) = by_type["AWS::SQS::Queue"].values()
    (queue_policy,) = by_type["AWS::SQS::QueuePolicy"].values()
    rules = {name: props["EventPattern"] for name, props in by_type["AWS::Events::Rule"].items()}
    return {
        "ControllerPolicies": policies,
        "NodeRole": _sub(role),
        "InterruptionQueue": _sub(queue),
        "InterruptionQueuePolicy": _sub(queue_policy["PolicyDocument"]),
        "InterruptionRules": rules,
    }


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        document = yaml.load(f, Loader=_Template)  # noqa: S506 - SafeLoader plus CloudFormation tags
    sys.stdout.write(json.dumps(extract(document), indent=2) + "\n")
