#!/usr/bin/env bash
# The benchmark suite as if on an AVX2-only x86 CPU, on a machine that has AVX-512: a proxy, not
# an AVX2 machine (the caches, the clock and the core stay this machine's). Restricted to AVX2:
# XLA (--xla_cpu_max_isa), the native kernel (built again without the AVX-512 clone of its gate
# loops and without its AVX-512 engine, in a scratch copy of the repository: its float32 products
# run on the AVX2 engine), OpenBLAS (OPENBLAS_CORETYPE=Haswell), and torch
# (ATen's kernels, MKL and oneDNN). The report is benchmarks/results/cpu-avx2-proxy.{json,md,png}
# unless --name / --out say otherwise; other arguments go to `python -m benchmarks`.
#
#   bash benchmarks/avx2_proxy.sh [python -m benchmarks arguments]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp -r "$repo/jaxgru" "$repo/native" "$repo/benchmarks" "$repo/parity" "$repo/setup.py" "$scratch/"
rm -f "$scratch"/jaxgru/_gru_kernel*.so
# CPPFLAGS: setuptools passes it to the C++ compile (CFLAGS it does not: until this check, the
# proxy ran the full AVX-512 kernel, benchmarks/NOTES.md, entry 11f).
(cd "$scratch" && CPPFLAGS="-DJAXGRU_MAX_ISA_AVX2" "$python" setup.py -q build_ext --inplace >/dev/null)
engine=$(cd "$scratch" && "$python" -c "from jaxgru import _native_library; print(_native_library.isa())")
if [ "$engine" != avx2 ]; then
  echo "avx2_proxy.sh: the rebuilt kernel runs the '$engine' engine, not avx2; nothing was measured" >&2
  exit 1
fi
export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_cpu_max_isa=AVX2"
export OPENBLAS_CORETYPE=Haswell ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
cd "$scratch"
"$python" -m benchmarks --name cpu-avx2-proxy --out "$repo/benchmarks/results" "$@"
