"""The assets that connect the project's DAGs (and upstream pipelines) to each other."""

from __future__ import annotations

from airflow.sdk import Asset

#: Updated by upstream pipelines when new training data lands; starts a retraining run.
#: An event's ``extra`` may carry ``{"uri": "<folder or s3:// prefix with the IDX files>"}``.
TRAINING_DATA = Asset(name="fashion_mnist_training_data", uri="eksml://datasets/fashion-mnist/train")

#: Updated by the training DAG when a new champion is promoted; starts a deployment.
CHAMPION_MODEL = Asset(name="fashion_mnist_champion_model", uri="eksml://models/fashion-mnist/champion")
