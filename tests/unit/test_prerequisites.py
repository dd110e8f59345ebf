"""The AWS prerequisites in docs/aws.md are the generated ones, so they cannot drift from the policies."""

from __future__ import annotations

from pathlib import Path

from eksml.prerequisites import BEGIN, END, render

AWS_DOC = Path(__file__).resolve().parents[2] / "docs" / "aws.md"


def test_aws_doc_section_is_the_generated_one():
    text = AWS_DOC.read_text()
    section = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    assert section.strip() == render().strip(), (
        "run: PYTHONPATH=plugins python -m eksml.prerequisites --write docs/aws.md"
    )


def test_every_action_of_the_rendered_policies_is_listed():
    from eksml.cluster import iam

    doc = iam.pipeline_policy(
        "s3://b-1/p", "fashion-mnist", "us-west-2", sagemaker_role_arn="arn:aws:iam::1:role/r", cluster_name="eksml"
    )
    listed = render()
    for st in doc["Statement"]:
        for action in st["Action"] if isinstance(st["Action"], list) else [st["Action"]]:
            if not action.startswith("s3:"):
                assert action in listed
