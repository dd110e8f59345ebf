# The two commands that matter: `make run` (the main job, local profile) and `make test`.
.PHONY: run test lint format test-unit test-fast test-slow test-k8s test-node setup render bench clean

CONF ?= {}
# CONF reaches scripts/run_local.sh byte for byte: make neither expands it (a command-line variable
# is exported, and so expanded, unless unexported) nor hands it to the shell as recipe text.
unexport CONF
PYTEST := .venv/bin/python -m pytest

run: export EKSML_RUN_CONF := $(value CONF)
run:            ## set up, then train, evaluate, register, deploy and query the model locally
	bash scripts/run_local.sh "$$EKSML_RUN_CONF"

test:           ## lint, then every tier that can run on this machine (what CI runs), the k8s and real-node tiers included
	bash scripts/setup.sh --k8s-testenv --browser
	.venv/bin/ruff format --check --diff .
	.venv/bin/ruff check .
	PYTHONPATH=plugins .venv/bin/lint-imports
	$(PYTEST) -m "not cluster"

lint:           ## ruff format --check, ruff check and the layer contract (pyproject.toml), as `make test` runs them
	bash scripts/setup.sh
	.venv/bin/ruff format --check --diff .
	.venv/bin/ruff check .
	PYTHONPATH=plugins .venv/bin/lint-imports

format:         ## rewrite the tree with ruff's formatter and its safe fixes
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

test-unit:      ## unit tests only (about a minute)
	bash scripts/setup.sh
	$(PYTEST) tests/unit -m "not slow and not cluster and not k8s and not node"

test-k8s:       ## the Kubernetes half of the aws profile against a real control plane (built once from source)
	bash scripts/setup.sh --k8s-testenv
	$(PYTEST) -m "k8s and not cluster and not node"

test-node:      ## images built from their Dockerfiles, and the workloads on a real node joined to the test control plane (root)
	bash scripts/setup.sh --k8s-testenv
	$(PYTEST) -m "node and not cluster"

test-fast:      ## unit + integration + end-to-end on small slices of the real data (about 8 minutes)
	bash scripts/setup.sh
	$(PYTEST) -m "not slow and not cluster and not k8s and not node"

test-slow:      ## full-data training, real Airflow services, browser, model-server suites
	bash scripts/setup.sh --browser
	$(PYTEST) -m "slow and not cluster and not node"

bench:          ## benchmarks that print figures (minutes)
	.venv/bin/python bench/dag_parse.py
	.venvs/inference/bin/python bench/inference_latency.py
	.venv/bin/python bench/horovod_scaling.py

setup:
	bash scripts/setup.sh

render:         ## every object the aws profile would send, into build/aws
	PYTHONPATH=plugins .venv/bin/python -m eksml.render --profile aws --out build/aws
	PYTHONPATH=plugins .venv/bin/python -m eksml.cluster.eksctl render > build/aws/cluster.eksctl.yaml

clean:
	rm -rf .local build
