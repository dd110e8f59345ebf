#!/usr/bin/env bash
# The checks `make lint` and `make test` run: the formatter, the linter, and the layer contract
# (pyproject.toml's import-linter contracts). After scripts/setup.sh --dev.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff format --check --diff .
.venv/bin/ruff check .
PYTHONPATH=plugins .venv/bin/lint-imports
