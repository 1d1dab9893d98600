"""``python -m benchmarks.first_call``: the seed task's first call, as a user meets it, in fresh processes.

A user runs a script: imports, data, then the first call of the jitted training function, which
traces, lowers and compiles the program before it runs 200 epochs. Here each side runs in a
process of its own, started fresh each time, in a random order:

- ``jax``: the seed task written as a user would (``jaxgru.gru`` + a linear head, ``optax.adam``,
  200 full-batch epochs in one jitted ``lax.scan``; the tutorial's data), its first call split into
  trace, lower, compile and run, imports and data apart;
- ``jax-cached``: the same with JAX's persistent compilation cache warm (what a repeat run of
  ``jaxgru-sine`` does; the cache is filled by an untimed process first);
- ``torch``: the tutorial's 200-epoch PyTorch loop, the first in its process.

It prints the medians and the ratio of torch's whole loop to jaxgru's first call.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

# The seed task as a user writes it with jaxgru and optax: no torch and no parity in the process
# (torch's modules make every full garbage collection of the process several times slower; a
# collection that falls inside the first call then costs ~120 ms: benchmarks/NOTES.md, entry 12c).
_JAX = """
import json, math, time
import numpy as np
import jax, jax.numpy as jnp, optax
import jaxgru
if {cache!r}:
  jax.config.update("jax_compilation_cache_dir", {cache!r})
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
rng = np.random.default_rng(0)
series = (np.sin(np.linspace(0, 100, 200)) + rng.normal(scale=0.1, size=200)).astype(np.float32)
x = jnp.asarray(np.lib.stride_tricks.sliding_window_view(series[:-1], 10)[..., None])  # (190, 10, 1)
y = jnp.asarray(series[10:, None])
k_gru, k_w, k_b = jax.random.split(jax.random.key(0), 3)
bound = 1 / math.sqrt(16)
params = {{
  "gru": jaxgru.init_gru_params(k_gru, 1, 16),
  "fc": {{"weight": jax.random.uniform(k_w, (1, 16), minval=-bound, maxval=bound),
          "bias": jax.random.uniform(k_b, (1,), minval=-bound, maxval=bound)}},
}}
opt = optax.adam(1e-3)
opt_state = opt.init(params)
jax.block_until_ready((params, opt_state, x, y))

def loss(params, x, y):
  out, _ = jaxgru.gru(params["gru"], x, batch_first=True)
  return jnp.mean((out[:, -1] @ params["fc"]["weight"].T + params["fc"]["bias"] - y) ** 2)

@jax.jit
def train(params, opt_state, x, y):
  def epoch(carry, _):
    params, opt_state = carry
    value, grads = jax.value_and_grad(loss)(params, x, y)
    updates, opt_state = opt.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), value
  return jax.lax.scan(epoch, (params, opt_state), length=200)

t0 = time.perf_counter()
traced = train.trace(params, opt_state, x, y)
t1 = time.perf_counter()
lowered = traced.lower()
t2 = time.perf_counter()
compiled = lowered.compile()
t3 = time.perf_counter()
jax.block_until_ready(compiled(params, opt_state, x, y))
t4 = time.perf_counter()
print(json.dumps(dict(trace=t1 - t0, lower=t2 - t1, compile=t3 - t2, run=t4 - t3, first_call=t4 - t0)))
"""

_TORCH = """
import json, time
import torch
from parity.sine import task as sine_task
from benchmarks.seed_task import _torch_run
data = sine_task.make_data(0)
print(json.dumps(dict(loop=_torch_run(data, 0))))
"""


def _run(code: str) -> dict[str, float]:
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]), JAX_PLATFORMS="cpu")
  done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, check=True)
  return json.loads(done.stdout.strip().splitlines()[-1])


def run(repeats: int = 3) -> dict[str, list[dict[str, float]]]:
  """``repeats`` fresh processes of each kind, in a random order; their measurements."""
  results: dict[str, list[dict[str, float]]] = {"jax": [], "jax-cached": [], "torch": []}
  with tempfile.TemporaryDirectory() as cache:
    _run(_JAX.format(cache=cache))  # fills the cache, untimed
    order = [kind for kind in results for _ in range(repeats)]
    random.Random(0).shuffle(order)
    for kind in order:
      code = _TORCH if kind == "torch" else _JAX.format(cache=cache if kind == "jax-cached" else "")
      results[kind].append(_run(code))
  return results


def describe(results: dict[str, list[dict[str, float]]]) -> str:
  med = lambda kind, key: float(np.median([r[key] for r in results[kind]]))
  torch_loop = med("torch", "loop")
  lines = [f"seed task, first call in a fresh process (medians of {len(results['torch'])}):"]
  for kind in ("jax", "jax-cached"):
    parts = ", ".join(f"{k} {med(kind, k) * 1e3:.0f} ms" for k in ("trace", "lower", "compile", "run"))
    first = med(kind, "first_call")
    lines.append(f"  {kind:10s} first call {first * 1e3:.0f} ms ({parts}): torch's loop / first call = {torch_loop / first:.2f}x")
  lines.append(f"  torch      200-epoch loop {torch_loop * 1e3:.0f} ms (the first in its process)")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  cli = argparse.ArgumentParser(prog="python -m benchmarks.first_call", description=__doc__.split("\n\n")[0])
  cli.add_argument("--repeats", type=int, default=3, help="fresh processes of each kind (default 3)")
  args = cli.parse_args(argv)
  if args.repeats < 1:  # a median of nothing would print nan
    cli.error(f"argument --repeats: must be >= 1, got {args.repeats}")
  from benchmarks import machine

  print(machine.cpu_model(), flush=True)
  print(describe(run(args.repeats)))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
