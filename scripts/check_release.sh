#!/usr/bin/env bash
# Checks the release as users meet it. Builds the sdist and the wheels (scripts/wheel.sh), then
# installs each into a fresh venv and runs scripts/release_smoke.py there (import, forward,
# gradients, the modules, the native kernel against the reference in float64, the extras):
#
# on this machine (x86-64):
#   floor      the x86-64 wheel at the oldest supported stack (requirements/floor.txt, Python 3.11)
#   middle     the same at jax 0.8.3
#   newest     the same at the newest tested stack (requirements/newest.txt, Python 3.12)
#   unpinned   the same with whatever JAX the registry serves now (Python 3.12)
#   sdist-no-compiler  the sdist where there is no C++ compiler: the XLA paths
#   pure       the py3-none-any wheel: no kernel, native_status() says why
# in Debian 11 (scripts/userland.sh bullseye-amd64: glibc 2.31, gcc 10.2, binutils 2.35.2):
#   old-glibc  the x86-64 wheel at the pinned stack (requirements/constraints.txt)
#   old-sdist  the sdist, built there by gcc 10: its kernel checked at install and run
#   old-sdist-broken  the sdist linked with -s, which binutils 2.35 mislinks (the kernel would
#              crash): refused at install, jaxgru runs on the XLA paths
# under emulation (scripts/userland.sh bookworm-arm64: aarch64, Debian 12's Python 3.11):
#   aarch64    the aarch64 wheel at the pinned stack, on an emulated Neoverse N1: the smoke test,
#              then native/check_kernel.py (the check its cross-compiled kernel skipped)
#
#   bash scripts/check_release.sh [--prebuilt] [--part all|x86|aarch64]
#
# --prebuilt checks the release already in dist/ instead of building it; --part checks the x86-64
# stacks (this machine and Debian 11) or the emulated aarch64 one alone (default: all, the
# emulated run in the background beside the others, since it keeps one core busy and waits on
# nothing else). Every install skips pip's bytecode compilation (Python compiles what it imports).
#
# Python 3.12 is looked for as python3.12 and in pyenv; without it, the newest stacks are the
# newest JAX for Python 3.11 (requirements/constraints.txt). JAXGRU_RELEASE_AARCH64=0 leaves out
# the emulated run (the slowest part). Needs root for the userlands; CI runs all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
prebuilt=0 part=all
while [ $# -gt 0 ]; do
  case $1 in
    --prebuilt) prebuilt=1 ;;
    --part) part=${2:?--part needs all, x86 or aarch64}; shift ;;
    *) echo "usage: check_release.sh [--prebuilt] [--part all|x86|aarch64]" >&2; exit 2 ;;
  esac
  shift
done
case $part in all | x86 | aarch64) ;; *) echo "check_release.sh: --part is all, x86 or aarch64, not $part" >&2; exit 2 ;; esac
[ "${JAXGRU_RELEASE_AARCH64:-1}" != 0 ] || [ "$part" != aarch64 ] || { echo "JAXGRU_RELEASE_AARCH64=0: nothing to check"; exit 0; }

[ "$prebuilt" = 1 ] || bash scripts/wheel.sh
wheel=$(ls "$repo"/dist/jaxgru-*-py3-none-manylinux_*_x86_64.whl)
arm=$(ls "$repo"/dist/jaxgru-*-py3-none-manylinux_*_aarch64.whl)
pure=$(ls "$repo"/dist/jaxgru-*-py3-none-any.whl)
sdist=$(ls "$repo"/dist/jaxgru-*.tar.gz)
for w in "$wheel" "$arm" "$pure"; do
  echo "wheel: $(basename "$w")"
  # (listings kept whole: grep -q closing the pipe early would fail the pipeline under pipefail)
  listing=$(unzip -l "$w")
  grep -q "dist-info/licenses/LICENSE" <<<"$listing" || { echo "$(basename "$w") has no LICENSE" >&2; exit 1; }
done
listing=$(tar -tzf "$sdist")
grep -q "/LICENSE$" <<<"$listing" || { echo "the sdist has no LICENSE" >&2; exit 1; }
grep -q "/CHANGELOG.md$" <<<"$listing" || { echo "the sdist has no CHANGELOG.md" >&2; exit 1; }
grep -q "/native/check_kernel.py$" <<<"$listing" || { echo "the sdist has no native/check_kernel.py" >&2; exit 1; }

work=$(mktemp -d)
source scripts/steps.sh
STEPS_ON_EXIT='rm -rf "$work"'
cp "$wheel" "$arm" "$sdist" scripts/release_smoke.py native/check_kernel.py requirements/*.txt "$work/"

# stack NAME PYTHON NATIVE WHY PIP-ARGS...: a fresh venv, pip install PIP-ARGS, the smoke test there
stack() {
  local name=$1 python=$2 native=$3 why=$4
  shift 4
  echo "== $name: $("$python" --version 2>&1), pip install $(printf '%s ' "$@" | sed "s|$repo/||g")"
  "$python" -m venv "$work/$name"
  "$work/$name/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile "$@" 2>&1 |
    { grep -v "^WARNING: Location" || true; }
  (cd "$work" && "$work/$name/bin/python" "$repo/scripts/release_smoke.py" --native "$native" --why "$why")
}

# inside USERLAND NAME NATIVE WHY ENV PIP-ARGS...: the same in a userland (files from $work, at
# /work), pip run with the variables ENV ("" or "NAME=VALUE ..."); SMOKE_ARGS, if set, go to the
# smoke test, and SMOKE_ENV ("NAME=VALUE ...") into its environment
inside() {
  local userland=$1 name=$2 native=$3 why=$4 env=$5 smoke=${SMOKE_ARGS:-} smoke_env=${SMOKE_ENV:-}
  shift 5
  echo "== $name ($userland): ${env:+$env }pip install $*"
  bash scripts/userland.sh "$userland" "$work" -- bash -c '
    set -e
    name=$1 native=$2 why=$3 env=$4 smoke=$5 smoke_env=$6
    shift 6
    rm -rf "/tmp/venv-$name"
    python3.11 -m venv "/tmp/venv-$name"
    cd /work
    env $env "/tmp/venv-$name/bin/python" -m pip install --quiet --no-compile "$@"
    cd /tmp && env $smoke_env "/tmp/venv-$name/bin/python" /work/release_smoke.py --native "$native" --why "$why" $smoke
  ' inside "$name" "$native" "$why" "$env" "$smoke" "$smoke_env" "$@"
}

# Under emulation XLA's compilations take most of the time (minutes each); its LLVM backend's
# optimisations, left out as the test suite leaves them out, shorten them. The programs are tiny,
# so the kernel's numbers and the reference's are compared as before.
EMULATED_XLA_FLAGS="XLA_FLAGS=--xla_backend_optimization_level=0"

aarch64() {
  # under emulation the smoke test compares the kernel alone with the reference: the XLA paths are
  # the same JAX code as on x86-64, and every XLA compilation costs minutes there
  SMOKE_ARGS="--impls native" SMOKE_ENV=$EMULATED_XLA_FLAGS inside bookworm-arm64 aarch64 yes "" "" -c constraints.txt "$(basename "$arm")"
  # the check the cross-compiled kernel skipped at build time: every case, float32 included
  bash scripts/userland.sh bookworm-arm64 "$work" -- /usr/bin/env "$EMULATED_XLA_FLAGS" /tmp/venv-aarch64/bin/python \
    /work/check_kernel.py /tmp/venv-aarch64/lib/python3.11/site-packages/jaxgru
}

x86() {
  stack floor python3.11 yes "" -c requirements/floor.txt "$wheel"
  stack middle python3.11 yes "" jax==0.8.3 jaxlib==0.8.3 flax==0.12.2 "$wheel"
  newest=$(command -v python3.12 2>/dev/null || true)
  [ -n "$newest" ] && "$newest" --version >/dev/null 2>&1 || newest=$(ls "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 2>/dev/null | tail -1 || true)
  if [ -n "$newest" ]; then
    stack newest "$newest" yes "" -c requirements/newest.txt "$wheel"
    stack unpinned "$newest" yes "" --upgrade "$wheel"
  else
    echo "no Python 3.12 here: the newest stacks are the newest for Python 3.11 (requirements/constraints.txt)"
    stack newest python3.11 yes "" -c requirements/constraints.txt "$wheel"
    stack unpinned python3.11 yes "" --upgrade "$wheel"
  fi
  CC=/bin/false CXX=/bin/false stack sdist-no-compiler python3.11 no "C++17 compiler" -c requirements/constraints.txt "$sdist"
  stack pure python3.11 no "pure Python wheel" -c requirements/constraints.txt "$pure"

  inside bullseye-amd64 old-glibc yes "" "" -c constraints.txt "$(basename "$wheel")"
  inside bullseye-amd64 old-sdist yes "" "" -c constraints.txt "$(basename "$sdist")"
  inside bullseye-amd64 old-sdist-broken no "crashed" LDFLAGS=-s -c constraints.txt "$(basename "$sdist")"
}

case $part in
  x86) step x86 x86 ;;
  aarch64) step aarch64 aarch64 ;;
  all)
    if [ "${JAXGRU_RELEASE_AARCH64:-1}" != 0 ]; then
      bash scripts/userland.sh bookworm-arm64 -- true  # made first if missing, so that the two never make it at once
      start aarch64 aarch64
    fi
    step x86 x86
    [ "${JAXGRU_RELEASE_AARCH64:-1}" = 0 ] || finish aarch64
    ;;
esac
echo "release check ($part): ok"
