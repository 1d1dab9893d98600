#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh) and runs the project's main job; extra arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/demo.py "$@"
