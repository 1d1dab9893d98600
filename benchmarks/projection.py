"""Where should a GRU's input projection W_ih x + b_ih be computed? Measured, not assumed.

Compares, for forward and forward+backward of one layer (T, B, I, H):
  in_step   x_t @ W_ih.T inside the scan step (no precomputation);
  hoisted   one (T, B, 3H) product before the scan, sliced per gate inside the step;
  per_gate  three (T, B, H) products before the scan, one scanned array per gate (jaxgru's choice).

Run: ``python benchmarks/projection.py`` (medians of interleaved runs, compile excluded).
"""

from __future__ import annotations

import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxgru._cell import linear as _linear
from jaxgru._cell import step as _step

SHAPES = [(10, 190, 1, 16), (100, 64, 128, 128), (100, 64, 512, 512), (1000, 16, 64, 128)]


def _scan(xs, h0, w_hh, b_hh, gates):
  def step(h, x):
    h = _step(gates(x), h, w_hh, b_hh, "torch")
    return h, h

  return lax.scan(step, h0, xs)


def in_step(p, x, h0):
  return _scan(x, h0, p["w_hh"], p["b_hh"], lambda xt: jnp.split(_linear(xt, p["w_ih"], p["b_ih"]), 3, -1))


def hoisted(p, x, h0):
  return _scan(_linear(x, p["w_ih"], p["b_ih"]), h0, p["w_hh"], p["b_hh"], lambda g: jnp.split(g, 3, -1))


def per_gate(p, x, h0):
  hidden = p["w_hh"].shape[1]
  xs = tuple(_linear(x, p["w_ih"][g * hidden : (g + 1) * hidden], p["b_ih"][g * hidden : (g + 1) * hidden]) for g in range(3))
  return _scan(xs, h0, p["w_hh"], p["b_hh"], lambda g: g)


def _loss(fn):
  return lambda p, x, h0: jnp.sum(fn(p, x, h0)[1])


def main(repeats: int = 15) -> None:
  print(f"{platform.processor() or platform.machine()}, jax {jax.__version__}, float32, medians of {repeats}")
  print(f"{'T, B, I, H':>22} {'mode':>9} " + " ".join(f"{n:>10}" for n in ("in_step", "hoisted", "per_gate")))
  for T, B, I, H in SHAPES:
    k = jax.random.split(jax.random.key(0), 6)
    p = {
      "w_ih": jax.random.normal(k[0], (3 * H, I)) / np.sqrt(I),
      "w_hh": jax.random.normal(k[1], (3 * H, H)) / np.sqrt(H),
      "b_ih": jax.random.normal(k[2], (3 * H,)),
      "b_hh": jax.random.normal(k[3], (3 * H,)),
    }
    x, h0 = jax.random.normal(k[4], (T, B, I)), jnp.zeros((B, H))
    for mode, wrap in (("forward", lambda f: f), ("fwd+bwd", lambda f: jax.grad(_loss(f), argnums=(0, 1, 2)))):
      fns = [jax.jit(wrap(f)) for f in (in_step, hoisted, per_gate)]
      for f in fns:
        jax.block_until_ready(f(p, x, h0))
      times = [[] for _ in fns]
      for _ in range(repeats):  # interleaved, so drift hits every variant alike
        for f, ts in zip(fns, times, strict=True):
          start = time.perf_counter()
          jax.block_until_ready(f(p, x, h0))
          ts.append(time.perf_counter() - start)
      print(f"{str((T, B, I, H)):>22} {mode:>9} " + " ".join(f"{np.median(ts) * 1e3:>8.2f}ms" for ts in times))


if __name__ == "__main__":
  main()
