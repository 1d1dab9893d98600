"""Peak memory of forward+backward over a long sequence, with and without ``remat``.

T = 10,000, B = 32, I = H = 256, float32. Each case runs in a fresh process: peak resident memory
(``ru_maxrss``) above the process's size after set-up, and XLA's own count of the compiled
program's temporary buffers. Run alone: ``python -m benchmarks.memory``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

SHAPE = (10_000, 32, 256, 256)
CASES = (("fused", False), ("fused", True), ("reference", False), ("reference", True))

_CHILD = r"""
import json, resource, sys, time
import jax, jax.numpy as jnp
import jaxgru
T, B, I, H = {shape}
impl, remat = {impl!r}, {remat!r}
params = jaxgru.init_gru_params(jax.random.key(0), I, H)
x = jax.random.normal(jax.random.key(1), (T, B, I))
grad = jax.jit(jax.grad(lambda p, x: jnp.sum(jaxgru.gru(p, x, impl=impl, remat=remat)[0] ** 2), argnums=(0, 1)))
compiled = grad.lower(params, x).compile()
temp = compiled.memory_analysis().temp_size_in_bytes
jax.block_until_ready((params, x))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
jax.block_until_ready(compiled(params, x))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(impl=impl, remat=remat, temp_bytes=temp, peak_rss_bytes=peak * 1024, rss_above_setup_bytes=(peak - base) * 1024, seconds=seconds)))
"""


def run(shape: tuple[int, int, int, int] = SHAPE, cases=CASES) -> dict[str, Any]:
  results = []
  for impl, remat in cases:
    code = _CHILD.format(shape=tuple(shape), impl=impl, remat=remat)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
      results.append({"impl": impl, "remat": remat, "error": done.stderr.strip().splitlines()[-1:]})
      continue
    results.append(json.loads(done.stdout.strip().splitlines()[-1]))
  return {"shape": "x".join(map(str, shape)), "cases": results}


def describe(r: dict[str, Any]) -> str:
  lines = [f"fwd+bwd memory, T x B x I x H = {r['shape']}, float32:"]
  for c in r["cases"]:
    if "error" in c:
      lines.append(f"  impl={c['impl']:<9} remat={c['remat']!s:<5}  failed: {c['error']}")
      continue
    lines.append(
      f"  impl={c['impl']:<9} remat={c['remat']!s:<5}  XLA temp {c['temp_bytes'] / 2**20:8.0f} MiB   "
      f"peak RSS above set-up {c['rss_above_setup_bytes'] / 2**20:8.0f} MiB   {c['seconds']:.2f} s"
    )
  return "\n".join(lines)


if __name__ == "__main__":
  print(describe(run()))
