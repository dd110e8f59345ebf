"""The README's "First run on AWS" prerequisites, generated from the tables the policies come from.

Each identity's store access comes from ``eksml.layout.ACCESS``, its other AWS actions from
``eksml.eksctl.iam``, the quotas from ``eksml.eksctl.instance_types``, the images from
``eksml.specs``; so the README cannot promise other permissions than the ones the project renders.
``python -m eksml.prerequisites`` prints the section; ``--write README.md`` replaces it there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eksml.layout import Identity

BEGIN, END = (
    "<!-- prerequisites:begin (python -m eksml.prerequisites --write README.md) -->",
    "<!-- prerequisites:end -->",
)

#: How the README writes a command of this package: runnable as is from a clone.
RUN = "PYTHONPATH=plugins .venv/bin/python -m"

_WHO = {
    Identity.PIPELINE: (
        "Airflow (the `EKSML_AWS_CONN_ID` connection, `aws_default` by default)",
        f"`{RUN} eksml.eksctl iam pipeline`",
    ),
    Identity.TRAINING: (
        "training, MPI and evaluation pods (IRSA role `<cluster>-<region>-training`)",
        f"made by eksctl with the cluster: `{RUN} eksml.eksctl iam training`",
    ),
    Identity.INFERENCE: (
        "model server pods (IRSA role `<cluster>-<region>-inference`)",
        f"made by eksctl with the cluster: `{RUN} eksml.eksctl iam inference`",
    ),
    Identity.SAGEMAKER: (
        "SageMaker execution role (`EKSML_SAGEMAKER_ROLE_ARN`)",
        f"`{RUN} eksml.eksctl iam sagemaker`",
    ),
    Identity.LIFECYCLE: (
        "eksctl: creates, scales, deletes clusters (`EKSML_LIFECYCLE_AWS_CONN_ID`, default Airflow's)",
        f"`{RUN} eksml.eksctl iam lifecycle`, permissions boundary `{RUN} eksml.eksctl iam lifecycle-boundary`",
    ),
}


def render() -> str:
    from eksml.eksctl.iam import PIPELINE_BUCKET_ACTIONS, PIPELINE_SERVICE_ACTIONS, SAGEMAKER_SERVICE_ACTIONS
    from eksml.eksctl.instance_types import EC2_GPU_QUOTAS
    from eksml.eksctl.lifecycle_iam import LIFECYCLE_SCOPE
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
    lines.append(
        '- SageMaker "`<instance type>` for training job usage" ("... for spot training job usage" '
        "with managed spot): one per concurrent training job"
    )
    images = sorted({*TRAINING_IMAGES.values(), "inference"})
    lines += [
        "",
        "Images in ECR (`EKSML_IMAGE_REGISTRY=<account>.dkr.ecr.<region>.amazonaws.com/<prefix>`, "
        "tag `EKSML_IMAGE_TAG`): " + ", ".join(f"`<prefix>/{i}`" for i in images) + ".",
    ]
    return "\n".join(lines) + "\n"


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
