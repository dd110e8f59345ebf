"""The "First run on AWS" prerequisites of ``docs/aws.md``, generated from the tables the policies come from.

Each identity's store access comes from ``eksml.layout.ACCESS``, its other AWS actions from
``eksml.cluster.iam``, the quotas from ``eksml.cluster.instance_types`` and the vCPUs to request
from the default node groups through preflight's own count, the images from ``eksml.specs``;
so the documentation cannot promise other permissions or numbers than the ones the project uses.
``python -m eksml.prerequisites`` prints the section; ``--write docs/aws.md`` replaces it there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eksml.layout import Identity

BEGIN, END = (
    "<!-- prerequisites:begin (python -m eksml.prerequisites --write docs/aws.md) -->",
    "<!-- prerequisites:end -->",
)

#: How the documentation writes a command of this package: runnable as is from a clone.
RUN = "PYTHONPATH=plugins .venv/bin/python -m"

_WHO = {
    Identity.PIPELINE: (
        "Airflow (the `EKSML_AWS_CONN_ID` connection, `aws_default` by default)",
        f"`{RUN} eksml.cluster.eksctl iam pipeline`",
    ),
    Identity.TRAINING: (
        "training, MPI and evaluation pods (IRSA role `<cluster>-<region>-training`)",
        f"made by eksctl with the cluster: `{RUN} eksml.cluster.eksctl iam training`",
    ),
    Identity.INFERENCE: (
        "model server pods (IRSA role `<cluster>-<region>-inference`)",
        f"made by eksctl with the cluster: `{RUN} eksml.cluster.eksctl iam inference`",
    ),
    Identity.SAGEMAKER: (
        "SageMaker execution role (`EKSML_SAGEMAKER_ROLE_ARN`)",
        f"`{RUN} eksml.cluster.eksctl iam sagemaker`",
    ),
    Identity.LIFECYCLE: (
        "eksctl: creates, scales, deletes clusters (`EKSML_LIFECYCLE_AWS_CONN_ID`, default Airflow's)",
        f"`{RUN} eksml.cluster.eksctl iam lifecycle`, "
        f"permissions boundary `{RUN} eksml.cluster.eksctl iam lifecycle-boundary`",
    ),
}


def render() -> str:
    from eksml.cluster.iam import PIPELINE_BUCKET_ACTIONS, PIPELINE_SERVICE_ACTIONS, SAGEMAKER_SERVICE_ACTIONS
    from eksml.cluster.instance_types import EC2_GPU_QUOTAS, EC2_STANDARD_QUOTA, EC2_STANDARD_SPOT_QUOTA
    from eksml.cluster.lifecycle_iam import LIFECYCLE_SCOPE
    from eksml.layout import ACCESS, Op
    from eksml.specs import TRAINING_IMAGES

    lines = ["| identity | store areas (`<store>/<area>/<model>/`) | other AWS actions | policy |", "|---|---|---|---|"]
    services = {Identity.PIPELINE: PIPELINE_SERVICE_ACTIONS, Identity.SAGEMAKER: SAGEMAKER_SERVICE_ACTIONS}
    for identity in Identity:
        who, policy = _WHO[identity]
        areas = ", ".join(
            f"`{area.value}` {'/'.join(op.value for op in Op if op in ops)}" for area, ops in ACCESS[identity].items()
        )
        actions = [a for _, acts, _ in services.get(identity, ()) for a in acts]
        if identity is Identity.PIPELINE:
            actions += [*PIPELINE_BUCKET_ACTIONS, "eks:AssociateAccessPolicy (cluster admin, the project's clusters)"]
            actions.append("iam:PassRole (the SageMaker role, to sagemaker.amazonaws.com)")
        if identity is Identity.LIFECYCLE:
            actions.append(LIFECYCLE_SCOPE)
        lines.append(f"| {who} | {areas} | {', '.join(actions) or '-'} | {policy} |")
    lines += ["", "Quotas (Service Quotas console, per region) the run's instances count against:", ""]
    for (family, spot), (code, name) in sorted(EC2_GPU_QUOTAS.items()):
        lines.append(
            f'- EC2 `{code}` "{name}": vCPUs of the GPU node group\'s `{family}*` nodes'
            f"{' (spot node groups)' if spot else ''}"
        )
    for spot, (code, name) in ((False, EC2_STANDARD_QUOTA), (True, EC2_STANDARD_SPOT_QUOTA)):
        lines.append(
            f'- EC2 `{code}` "{name}": vCPUs of the CPU node groups (`ng-inference`, a dedicated training '
            f"cluster's `ng-system`){' (spot node groups)' if spot else ''}"
        )
    lines.append(
        '- SageMaker "`<instance type>` for training job usage" ("... for spot training job usage" '
        "with managed spot): one per concurrent training job"
    )
    lines += ["", *_fresh_account_steps(sorted({*TRAINING_IMAGES.values(), "inference"}))]
    return "\n".join(lines) + "\n"


def _fresh_account_steps(images: list[str]) -> list[str]:
    """Quota requests for the default cluster, the registry and the digest-pinned images: the
    numbers come from the node groups eksctl is given and the quota check preflight runs."""
    from eksml.cluster.request import ClusterRequest, build_cluster_configs
    from eksml.preflight import node_group_vcpus
    from eksml.settings import Settings

    request = ClusterRequest.from_settings(Settings(profile="aws", store_uri="s3://example-bucket/eksml"))
    configs = build_cluster_configs(request)
    groups = ", ".join(
        f"`{ng.name}` {ng.instance_types[0]} min {ng.min_size}/desired {ng.desired_capacity}/max {ng.max_size}"
        for ng in configs[0].node_groups
    )
    lines = [
        f"A fresh account starts at 0 GPU vCPUs and often 5-32 standard ones. The default cluster ({groups}) "
        "needs, in `EKSML_REGION` (request them first: the `eks_cluster` DAG's preflight refuses to create "
        "the cluster below the desired sizes; a training run needs one GPU node):",
        "",
    ]
    for (code, name), need in sorted(node_group_vcpus(configs).items()):
        wanted = max(need["max"], need["desired"])
        lines.append(
            f"- `{code}` ({name}): {need['desired']} vCPUs to create, {wanted} for the autoscaler's max sizes: "
            f"`aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {code} "
            f"--desired-value {wanted}`"
        )
    repositories = " ".join(f"<prefix>/{i}" for i in images)
    lines += [
        "",
        "Images, in a private ECR registry of the account (`EKSML_IMAGE_REGISTRY=<account>.dkr.ecr.<region>"
        ".amazonaws.com/<prefix>`, tag `EKSML_IMAGE_TAG`), pinned by digest (`EKSML_IMAGE_DIGESTS`):",
        "",
        f"- create: `for r in {repositories}; do aws ecr create-repository --repository-name $r "
        "--image-tag-mutability IMMUTABLE; done`",
        "- build and push each (build context `images/`): `docker build -f images/<image>/Dockerfile -t "
        "$EKSML_IMAGE_REGISTRY/<image>:$EKSML_IMAGE_TAG images && docker push "
        "$EKSML_IMAGE_REGISTRY/<image>:$EKSML_IMAGE_TAG`",
        "- pin: `aws ecr describe-images --repository-name <prefix>/<image> --image-ids imageTag=$EKSML_IMAGE_TAG "
        "--query 'imageDetails[0].imageDigest'` gives each digest; set `EKSML_IMAGE_DIGESTS="
        + ",".join(f"{i}@sha256:..." for i in images)
        + "`",
    ]
    return lines


def replace_section(text: str, section: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + section + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eksml.prerequisites", description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="replace the section between the markers in this file")
    args = parser.parse_args(argv)
    section = render()
    if args.write:
        args.write.write_text(replace_section(args.write.read_text(), section))
    else:
        sys.stdout.write(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
