"""Serving the champion: deploy a model version and prove it answers before traffic moves.

Each module has one job:

* ``smoke``      - ``smoke_test``: real predictions over V1 and V2, checked against the labels
                   of a few real Fashion-MNIST test images (``load_test_images``, any store)
* ``manifests``  - the server's :class:`~eksml.specs.WorkloadSpec` (one source for pod and
                   process) and the aws profile's Deployment, Service and Ingress as plain dicts
* ``local``      - the local profile: the server as a loopback process, ``deploy_local``
* ``operators``  - ``DeployModelOperator`` for DAG files (local or aws by settings.profile), and
                   ``roll_out``: apply, wait, smoke test through the Service, roll back on failure
                   (through :class:`~eksml.kubernetes.hooks.DeploymentHook`)

Import the submodules directly; this package imports nothing so that DAG files stay light.
"""
