"""Peak memory of forward+backward over a long sequence, with and without ``remat``.

T = 10,000, B = 32, I = H = 256, float32. Each case runs in a fresh process: peak resident memory
(``ru_maxrss``) above the process's resident size after set-up (inputs made, program compiled),
and XLA's own count of the compiled program's temporary buffers (``memory_analysis()``); on a GPU
also the device's own peak (``memory_stats()["peak_bytes_in_use"]``).
Run alone: ``python -m benchmarks.memory [--shape TxBxIxH]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
from typing import Any

from benchmarks.shapes import parse_shape

_ROOT = str(pathlib.Path(importlib.util.find_spec("jaxgru").origin).parent.parent)  # the child imports this jaxgru
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
try:
  compiled = grad.lower(params, x).compile()
except TypeError as err:  # a jaxgru without impl= / remat=
  print(json.dumps(dict(impl=impl, remat=remat, error=f"impl/remat not supported by this jaxgru: {{err}}")))
  sys.exit(0)
analysis = compiled.memory_analysis()
temp = None if analysis is None else analysis.temp_size_in_bytes
jax.block_until_ready((params, x))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
  with open("/proc/self/statm") as f:  # the resident size now, not its high-water mark (Linux)
    current = int(f.read().split()[1]) * resource.getpagesize() // 1024
except OSError:
  current = base
start = time.perf_counter()
jax.block_until_ready(compiled(params, x))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
device = jax.devices()[0]
stats = device.memory_stats() if device.platform != "cpu" else None  # an accelerator's own high-water mark
print(json.dumps(dict(
  impl=impl, remat=remat, temp_bytes=temp, peak_rss_bytes=peak * 1024, rss_above_setup_bytes=(peak - current) * 1024,
  peak_set_by_run=peak > base, seconds=seconds, platform=device.platform,
  device_peak_bytes=(stats or {{}}).get("peak_bytes_in_use"),
)))
"""


def run(shape: tuple[int, int, int, int] = SHAPE, cases=CASES) -> dict[str, Any]:
  results = []
  for impl, remat in cases:
    code = _CHILD.format(shape=tuple(shape), impl=impl, remat=remat)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env, cwd=_ROOT)
    if done.returncode != 0:
      last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
      results.append({"impl": impl, "remat": remat, "error": last[0]})
      continue
    results.append(json.loads(done.stdout.strip().splitlines()[-1]))
  return {"shape": "x".join(map(str, shape)), "cases": results}


def describe(r: dict[str, Any]) -> str:
  lines = [f"fwd+bwd memory, T x B x I x H = {r['shape']}, float32:"]
  for c in r["cases"]:
    if "error" in c:
      lines.append(f"  impl={c['impl']:<9} remat={c['remat']!s:<5}  failed: {c['error']}")
      continue
    temp = "     n/a" if c["temp_bytes"] is None else f"{c['temp_bytes'] / 2**20:8.0f}"
    lines.append(
      f"  impl={c['impl']:<9} remat={c['remat']!s:<5}  XLA temp {temp} MiB   "
      f"peak RSS above set-up {c['rss_above_setup_bytes'] / 2**20:8.0f} MiB   {c['seconds']:.2f} s"
      + (f"   {c['platform']} peak {c['device_peak_bytes'] / 2**20:.0f} MiB" if c.get("device_peak_bytes") else "")
    )
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n")[0])
  p.add_argument("--shape", type=_shape, default=SHAPE, help="TxBxIxH (default 10000x32x256x256)")
  print(describe(run(p.parse_args(argv).shape)))
  return 0


def _shape(text: str) -> tuple[int, int, int, int]:
  parsed = parse_shape(text)
  if parsed.num_layers != 1 or parsed.bidirectional:
    raise argparse.ArgumentTypeError(f"the memory measurement takes one layer, one direction: TxBxIxH, got {text!r}")
  return parsed.steps, parsed.batch, parsed.input_size, parsed.hidden_size


if __name__ == "__main__":
  raise SystemExit(main())
