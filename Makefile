# The two commands that matter: `make run` (the main job, local profile) and `make test`.
.PHONY: run run-node test lint format test-unit test-fast test-slow test-k8s test-node setup render bench clean

CONF ?= {}
# CONF reaches scripts/run_local.sh byte for byte: make neither expands it (a command-line variable
# is exported, and so expanded, unless unexported) nor hands it to the shell as recipe text.
unexport CONF
PYTEST := .venv/bin/python -m pytest
# Each target that needs the virtualenvs depends on `setup`, which runs scripts/setup.sh with the
# flags the target sets (a target-specific value reaches its prerequisites). Make builds `setup`
# once per call, with the flags of the first goal that needs it: one such goal per call.
SETUP_FLAGS :=

run: export EKSML_RUN_CONF := $(value CONF)
run:            ## set up, then train, evaluate, register, deploy and query the model locally
	bash scripts/run_local.sh "$$EKSML_RUN_CONF"

run-node: export EKSML_RUN_CONF := $(value CONF)
run-node:       ## root: the same DAGs in the kubernetes profile on a real node started here (images, cluster, S3), then stopped
	bash scripts/run_node.sh "$$EKSML_RUN_CONF"

test: SETUP_FLAGS := --dev --browser
test: setup     ## lint, then every tier that can run on this machine (what CI runs), the k8s and real-node tiers included
	bash scripts/test.sh

lint: SETUP_FLAGS := --dev
lint: setup     ## ruff format --check, ruff check and the layer contract (scripts/lint.sh, which `make test` runs too)
	bash scripts/lint.sh

format: SETUP_FLAGS := --dev
format: setup   ## rewrite the tree with ruff's formatter and its safe fixes
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

test-unit: SETUP_FLAGS := --dev
test-unit: setup ## unit tests only (about a minute)
	$(PYTEST) tests/unit -m "not slow and not cluster and not k8s and not node"

test-k8s: SETUP_FLAGS := --dev --k8s-testenv
test-k8s: setup  ## the Kubernetes half of the aws profile against a real control plane (built once from source)
	$(PYTEST) -m "k8s and not cluster and not node"

test-node: SETUP_FLAGS := --dev --k8s-testenv
test-node: setup ## images built from their Dockerfiles, and the workloads on a real node joined to the test control plane (root)
	$(PYTEST) -m "node and not cluster"

test-fast: SETUP_FLAGS := --dev
test-fast: setup ## unit + integration + end-to-end on small slices of the real data (about 8 minutes)
	$(PYTEST) -m "not slow and not cluster and not k8s and not node"

test-slow: SETUP_FLAGS := --dev --browser
test-slow: setup ## full-data training, real Airflow services, browser, model-server suites
	$(PYTEST) -m "slow and not cluster and not node"

bench:          ## benchmarks that print figures (minutes)
	.venv/bin/python bench/dag_parse.py
	.venvs/inference/bin/python bench/inference_latency.py
	.venv/bin/python bench/horovod_scaling.py

setup:          ## the virtualenvs, plus what the calling target asks for (SETUP_FLAGS); a second call only checks
	bash scripts/setup.sh $(SETUP_FLAGS)

render:         ## every object the aws profile would send, into build/aws
	PYTHONPATH=plugins .venv/bin/python -m eksml.render --profile aws --out build/aws
	PYTHONPATH=plugins .venv/bin/python -m eksml.cluster.eksctl render > build/aws/cluster.eksctl.yaml

clean:
	rm -rf .local build
