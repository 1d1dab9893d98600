"""Long-running eager callers: many calls of ``jaxgru.gru`` outside ``jit``, each impl in a fresh process.

A script that calls ``jaxgru.gru`` (or ``jax.grad`` of a loss through it) without ``jit``, in a
loop: an evaluation loop, a notebook, a debugging session. Each impl (``reference``, ``fused``,
``native``, ``pallas``) and each mode (``forward``; ``grad``, with ``lengths`` and the gradient of
the parameters) runs ``--calls`` calls in a process of its own, and the report gives the
programs XLA compiled (after the first call and after all of them), the resident memory after a
tenth of the calls and at the end, and the median time per call. ``--with-scan`` adds a bare
``lax.scan`` under eager ``jax.grad``, JAX's own behaviour, for comparison (``--scan-calls`` of
them: each compiles anew).

It exits 1 when a jaxgru case compiled anything after its first call or its resident memory grew
by more than ``--max-growth-mb`` between a tenth of the calls and the end.
Run alone: ``python -m benchmarks.eager [--calls 10000]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

from benchmarks import machine

_ROOT = str(pathlib.Path(importlib.util.find_spec("jaxgru").origin).parent.parent)  # the child imports this jaxgru
IMPLS = ("reference", "fused", "native", "pallas")

_CHILD = r"""
import json, resource, sys, time
import jax, jax.numpy as jnp
from jax import lax
import numpy as np
import jaxgru

impl, mode, calls = {impl!r}, {mode!r}, {calls}
compiles = [0]
def count(event, duration, **kwargs):
  if event == "/jax/core/compile/backend_compile_duration":
    compiles[0] += 1
jax.monitoring.register_event_duration_secs_listener(count)

def rss_mb():
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * 4096 / 2**20

params = jaxgru.init_gru_params(jax.random.key(0), 3, 8)
x = jax.random.normal(jax.random.key(1), (6, 2, 3))
lengths = jnp.array([6, 3])
if impl == "scan":  # a bare lax.scan, JAX alone
  def loss(p):
    step = lambda h, xt: (jnp.tanh(xt @ p["weight_ih_l0"][:8].T + h @ p["weight_hh_l0"][:8].T),) * 2
    return jnp.sum(lax.scan(step, jnp.zeros((2, 8)), x)[1])
  call = jax.grad(loss)
elif mode == "forward":
  call = lambda p: jaxgru.gru(p, x, impl=impl)
else:
  call = jax.grad(lambda p: jnp.sum(jaxgru.gru(p, x, lengths=lengths, impl=impl)[0] ** 2))

times = []
for i in range(calls):
  start = time.perf_counter()
  jax.block_until_ready(call(params))
  times.append(time.perf_counter() - start)
  if i == 0:
    first = compiles[0]
  if i == max(0, calls // 10 - 1):
    rss_early = rss_mb()
print(json.dumps(dict(impl=impl, mode=mode, calls=calls, compiles_first=first, compiles_after=compiles[0] - first,
                      rss_early_mb=rss_early, rss_end_mb=rss_mb(), median_ms=1e3 * float(np.median(times[1:] or times)))))
"""


def run_case(impl: str, mode: str, calls: int) -> dict:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([_ROOT, os.environ.get("PYTHONPATH", "")]), JAX_PLATFORMS="cpu")
  code = _CHILD.format(impl=impl, mode=mode, calls=calls)
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
  if done.returncode != 0:
    return dict(impl=impl, mode=mode, calls=calls, error=(done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1])
  return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--calls", type=int, default=10_000, help="calls per case (default: 10000)")
  parser.add_argument("--impls", default=",".join(IMPLS), help=f"comma-separated (default: {','.join(IMPLS)})")
  parser.add_argument("--max-growth-mb", type=float, default=20.0, help="allowed RSS growth per case (default: 20)")
  parser.add_argument("--with-scan", action="store_true", help="add a bare lax.scan under eager jax.grad (JAX alone)")
  parser.add_argument("--scan-calls", type=int, default=200, help="calls of the bare lax.scan (default: 200; each is slow)")
  args = parser.parse_args(argv)
  if args.calls < 10:
    parser.error("--calls must be at least 10")
  impls = [i for i in args.impls.split(",") if i]
  if unknown := sorted(set(impls) - set(IMPLS)):
    parser.error(f"unknown impls {unknown}; choose from {', '.join(IMPLS)}")

  print(machine.header(machine.describe("cpu", "default")))
  print(f"eager calls of a (T, B, I, H) = (6, 2, 3, 8) GRU, {args.calls} per case, each case in a fresh process\n")
  print(
    "| case | compiled by the 1st call | compiled after it | RSS after 1/10 (MB) | RSS at the end (MB) | median per call (ms) |"
  )
  print("|---|---|---|---|---|---|")
  cases = [(impl, mode) for impl in impls for mode in ("forward", "grad")] + ([("scan", "grad")] if args.with_scan else [])
  failed = []
  for impl, mode in cases:
    result = run_case(impl, mode, args.calls if impl != "scan" else max(10, args.scan_calls))
    name = f"{impl} {mode}" if impl != "scan" else f"bare lax.scan grad (JAX alone, {result['calls']} calls)"
    if "error" in result:
      print(f"| {name} | error: {result['error']} | | | | |")
      failed.append(name)
      continue
    print(
      f"| {name} | {result['compiles_first']} | {result['compiles_after']} | {result['rss_early_mb']:.0f} | "
      f"{result['rss_end_mb']:.0f} | {result['median_ms']:.2f} |",
      flush=True,
    )
    grew = result["rss_end_mb"] - result["rss_early_mb"] > args.max_growth_mb
    if impl != "scan" and (result["compiles_after"] > 0 or grew):
      failed.append(name)
  if failed:
    print(f"\nrecompiled or grew: {', '.join(failed)}")
    return 1
  print("\nevery jaxgru case compiled only at its first call and kept its memory flat")
  return 0


if __name__ == "__main__":
  sys.exit(main())
