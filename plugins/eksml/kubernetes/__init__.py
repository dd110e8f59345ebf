"""Training workloads on Kubernetes: a GPU pod per job, or an MPIJob for Horovod.

Each module has one job:

* ``workload``      - a :class:`~eksml.specs.WorkloadSpec` from XCom (dict or JSON), checked
* ``podparts``      - the pieces every training pod shares (GPU limits, node role, toleration,
                      non-root security context, environment without credentials)
* ``workload_pod``  - ``WorkloadPodOperator`` / ``GpuTrainingPodOperator`` on
                      ``KubernetesPodOperator``, and ``render_training_pod``
* ``mpijob``        - the ``kubeflow.org/v2beta1`` MPIJob a distributed spec becomes
* ``mpijob_status`` - the job's phase from its ``status.conditions``
* ``mpijob_trigger``  - ``MPIJobTrigger``: waits for that phase without holding a worker slot
* ``mpijob_operator`` - ``MPIJobOperator``: creates the MPIJob, defers, reports, cleans up
* ``launcher_logs`` - copies the launcher pod's log into the task log
* ``operators``     - the three operators, for DAG files

Import the submodules directly; this package imports nothing so that DAG files stay light.
"""
