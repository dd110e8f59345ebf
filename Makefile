# The two commands that matter: `make run` (the main job, local profile) and `make test`.
.PHONY: run test test-fast test-slow setup render bench clean

CONF ?= {}
PYTEST := .venv/bin/python -m pytest

run:            ## set up, then train, evaluate, register, deploy and query the model locally
	bash scripts/run_local.sh '$(CONF)'

test:           ## every tier that can run on this machine (what CI runs)
	bash scripts/setup.sh
	$(PYTEST) -m "not cluster"

test-fast:      ## unit and quick integration tests (about a minute)
	bash scripts/setup.sh
	$(PYTEST) -m "not slow and not cluster"

test-slow:
	$(PYTEST) -m "slow and not cluster"

setup:
	bash scripts/setup.sh

render:         ## every object the aws profile would send, into build/aws
	PYTHONPATH=plugins .venv/bin/python -m eksml.render --profile aws --out build/aws
	PYTHONPATH=plugins .venv/bin/python -m eksml.eksctl render > build/aws/cluster.eksctl.yaml

clean:
	rm -rf .local build
