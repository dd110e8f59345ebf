"""On-demand list prices (USD per hour) the cost estimate of a run uses, dated.

Source: the AWS pricing pages (Amazon EC2 On-Demand, Linux; Amazon EKS; Amazon SageMaker AI
training), region us-east-1, as recorded on :data:`PRICES_DATE`. They were not re-read from the
AWS Price List API on the machine that wrote this table; other regions, spot capacity, savings
plans and taxes differ, and the estimate says so. A type missing here gets no guess: the
estimate names it.
"""

from __future__ import annotations

from datetime import date

PRICES_DATE = date(2026, 11, 29)
PRICES_REGION = "us-east-1"

#: One EKS cluster's control plane per hour (standard support; extended support costs 0.60).
EKS_CLUSTER_HOUR = 0.10
EKS_EXTENDED_CLUSTER_HOUR = 0.60

EC2_HOUR: dict[str, float] = {
    "p3.2xlarge": 3.06,
    "p3.8xlarge": 12.24,
    "p3.16xlarge": 24.48,
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g4dn.12xlarge": 3.912,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.12xlarge": 5.672,
    "g5.48xlarge": 16.288,
    "g6.xlarge": 0.8048,
    "g6.12xlarge": 4.6016,
    "m5.large": 0.096,
    "m5.xlarge": 0.192,
    "m5.2xlarge": 0.384,
    "m5.4xlarge": 0.768,
}

SAGEMAKER_TRAINING_HOUR: dict[str, float] = {
    "ml.g4dn.xlarge": 0.736,
    "ml.g4dn.2xlarge": 0.94,
    "ml.g5.xlarge": 1.408,
    "ml.g5.2xlarge": 1.515,
    "ml.p3.2xlarge": 3.825,
    "ml.p3.8xlarge": 14.688,
    "ml.p3.16xlarge": 28.152,
    "ml.m5.xlarge": 0.23,
    "ml.m5.2xlarge": 0.461,
}


def hourly_cost(clusters: list[tuple[str, list[tuple[str, int]]]]) -> tuple[float, list[str]]:
    """Running cost per hour of clusters given as (name, [(instance type, nodes), ...]): control
    plane plus nodes at the dated list prices; a type missing from the table is named, not guessed."""
    total, lines = 0.0, []
    for name, nodes in clusters:
        cost, parts = EKS_CLUSTER_HOUR, [f"control plane ${EKS_CLUSTER_HOUR}/h"]
        for instance, count in nodes:
            price = EC2_HOUR.get(instance)
            if price is None:
                parts.append(f"{count} x {instance} (no price in eksml/prices.py)")
                continue
            cost += price * count
            parts.append(f"{count} x {instance} ${price * count:.3f}/h")
        total += cost
        lines.append(f"{name}: ${cost:.2f}/h ({', '.join(parts)})")
    return total, lines
