#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh), checks the code with ruff (lint, then formatting) and runs the
# whole test suite; extra arguments go to pytest. The tests run even when ruff complains; the exit
# status is pytest's if it failed, else 1 if ruff did, else 0.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
lint=0
.venv/bin/python -m ruff check . || lint=1
.venv/bin/python -m ruff format --check . || lint=1
tests=0
.venv/bin/python -m pytest -n "${JAXGRU_TEST_WORKERS:-2}" "$@" || tests=$?
if [ "$tests" -ne 0 ]; then
  exit "$tests"
fi
if [ "$lint" -ne 0 ]; then
  echo "ruff: the code needs fixing (ruff check --fix . / ruff format .), see above" >&2
fi
exit "$lint"
