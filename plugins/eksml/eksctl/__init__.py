"""Amazon EKS clusters through the eksctl CLI: config model and its YAML, request, hook,
operator, trigger.

Importing this package loads nothing; import the submodules (:mod:`eksml.eksctl.operators`
for the operator).
"""
