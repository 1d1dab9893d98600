#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh) and runs the project's main job: the seed tutorial's sine task
# trained in JAX beside PyTorch (examples/sine.py --compare-torch; writes out/sine.png). Extra
# arguments go to it (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/sine.py --compare-torch "$@"
