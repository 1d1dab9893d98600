#!/usr/bin/env bash
# Checks the release as a user meets it: builds the sdist and the manylinux wheel
# (scripts/wheel.sh), installs the *wheel* into fresh venvs at the oldest supported stack
# (requirements/floor.txt, Python 3.11), at jax 0.8.3 between them, and at the newest (requirements/newest.txt, Python 3.12:
# JAXGRU_NEWEST=unpinned takes whatever the registry serves), and the sdist with no C++ compiler
# at the pinned stack (requirements/constraints.txt), and runs scripts/release_smoke.py in each:
# import, forward, gradients, the modules, the native kernel against the reference in float64
# (the sdist without a compiler: the XLA paths alone), the extras' messages.
# Python 3.12 is looked for as python3.12 and in pyenv; without it, the newest stack is the
# newest JAX for Python 3.11, requirements/constraints.txt. A few minutes; CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

bash scripts/wheel.sh
wheel=$(ls "$repo"/dist/jaxgru-*-py3-none-manylinux_*.whl)
sdist=$(ls "$repo"/dist/jaxgru-*.tar.gz)
echo "wheel: $(basename "$wheel")"
# (listings kept whole: grep -q closing the pipe early would fail the pipeline under pipefail)
listing=$(unzip -l "$wheel")
grep -q "dist-info/licenses/LICENSE" <<<"$listing" || { echo "the wheel has no LICENSE" >&2; exit 1; }
listing=$(tar -tzf "$sdist")
grep -q "/LICENSE$" <<<"$listing" || { echo "the sdist has no LICENSE" >&2; exit 1; }
grep -q "/CHANGELOG.md$" <<<"$listing" || { echo "the sdist has no CHANGELOG.md" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# stack NAME PYTHON NATIVE PIP-ARGS...: a fresh venv, pip install PIP-ARGS, the smoke test there
stack() {
  local name=$1 python=$2 native=$3
  shift 3
  echo "== $name: $("$python" --version 2>&1), pip install $(printf '%s ' "$@" | sed "s|$repo/||g")"
  "$python" -m venv "$work/$name"
  "$work/$name/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true
  (cd "$work" && "$work/$name/bin/python" "$repo/scripts/release_smoke.py" --native "$native")
}

stack floor python3.11 yes -c requirements/floor.txt "$wheel"
stack middle python3.11 yes jax==0.8.3 jaxlib==0.8.3 flax==0.12.2 "$wheel"

newest=$(command -v python3.12 2>/dev/null || true)
[ -n "$newest" ] && "$newest" --version >/dev/null 2>&1 || newest=$(ls "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 2>/dev/null | tail -1 || true)
if [ -n "$newest" ]; then
  if [ "${JAXGRU_NEWEST:-}" = unpinned ]; then
    stack newest "$newest" yes --upgrade "$wheel"
  else
    stack newest "$newest" yes -c requirements/newest.txt "$wheel"
  fi
else
  echo "no Python 3.12 here: the newest stack is the newest for Python 3.11 (requirements/constraints.txt)"
  stack newest python3.11 yes -c requirements/constraints.txt "$wheel"
fi

# the sdist where there is no C++ compiler: installs, and runs on the XLA paths
CC=/bin/false CXX=/bin/false stack sdist-no-compiler python3.11 no -c requirements/constraints.txt "$sdist"
echo "release check: ok"
