#!/usr/bin/env bash
# Sets up .venv with jaxgru, parity and everything the tests, examples and benchmarks use.
#
# torch: installed first, pinned to the CPU build this project is tested with. Where pip would
# fetch a CUDA build instead, or to keep a torch of your own, set JAXGRU_TORCH, e.g.
#   JAXGRU_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" bash scripts/setup.sh
# A torch already importable in .venv is kept as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$python" --version 2>&1)"
  "$python" -m venv .venv
fi
# pip quiet, less the notes some machines' pip configurations print for every package; its status kept
pip_install() {
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
}
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: installing ${JAXGRU_TORCH:-torch==2.13.0 (its CPU build, about 200 MB)}: about a minute"
  # shellcheck disable=SC2086  # JAXGRU_TORCH may carry pip options
  pip_install ${JAXGRU_TORCH:-torch==2.13.0}
fi
# The editable install (and the native kernel's compile, ~20 s) runs again only when what it
# depends on changed: the stamp is a hash of the build and dependency files and the C++ sources.
stamp=.venv/.jaxgru-setup
want=$(cat pyproject.toml setup.py requirements/constraints.txt native/* | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # The native kernel compiles in pip's isolated build environment against the FFI headers of
  # pyproject.toml's build requirement (jaxlib 0.7.0, the oldest supported), as a released wheel
  # does: the constraints pin what runs, not what builds.
  echo "setup: installing jaxgru (editable) with the pinned stack and compiling the native kernel, then"
  echo "       checking it against the reference: about 2 minutes"
  pip_install -c requirements/constraints.txt -e ".[dev]"
  echo "$want" >"$stamp"
  echo "setup: .venv is ready ($(.venv/bin/python -c 'import jaxgru; print("native kernel:", jaxgru.native_status() or "built and checked")'))"
fi
