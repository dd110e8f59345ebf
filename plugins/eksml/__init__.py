"""eksml: Airflow operators, hooks and triggers for training and serving models on Kubernetes.

The package is imported by DAG files, so nothing here may import TensorFlow, MXNet or
create AWS clients at import time.
"""

__version__ = "0.1.0"
