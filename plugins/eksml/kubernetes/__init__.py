"""Workloads on Kubernetes: a GPU pod per job, an MPIJob for Horovod, the inference rollout's calls.

Laid out like the cncf-kubernetes provider it builds on:

* ``manifests`` - what a workload becomes, as data (no API calls): the pieces every training
                  pod shares and the ``kubeflow.org/v2beta1`` MPIJob of a distributed spec
* ``hooks``     - ``MPIJobHook`` / ``AsyncMPIJobHook`` on the provider's hooks: MPIJob create,
                  get, phase, wait, delete and launcher logs; ``DeploymentHook``: server-side
                  apply, rollout status, Service proxy and rollback (the inference rollout)
* ``triggers``  - ``MPIJobTrigger`` (waits only through the async hook) and the provider's pod
                  trigger for an EKS cluster
* ``operators`` - ``WorkloadPodOperator`` / ``GpuTrainingPodOperator`` on
                  ``KubernetesPodOperator``, ``MPIJobOperator``, and ``render_training_pod``
* ``workload``  - a :class:`~eksml.specs.WorkloadSpec` from XCom (dict or JSON), checked

Import the submodules directly; this package imports nothing so that DAG files stay light.
"""
