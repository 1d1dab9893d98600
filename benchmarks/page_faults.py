"""Minor page faults per call: how much of a mid-sized GRU's time goes to the allocator.

glibc's malloc hands blocks over 32 MiB (its dynamic mmap threshold tops out there) straight to
``mmap``; each call then faults every page of XLA's large temporaries in afresh. Compare
``python -m benchmarks.page_faults`` with
``MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 python -m benchmarks.page_faults``.
jaxgru sets neither: it is the user's process (``benchmarks/NOTES.md``).
"""

from __future__ import annotations

import os
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

import jaxgru


def per_call(fn, repeats: int = 20) -> tuple[float, float]:
  fn()
  fn()
  faults, times = [], []
  for _ in range(repeats):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
  return float(np.median(faults)), float(np.median(times)) * 1e3


def main(shape: tuple[int, int, int, int] = (100, 64, 128, 128)) -> None:
  steps, batch, inputs, hidden = shape
  model = torch.nn.GRU(inputs, hidden)
  params = {k: jnp.asarray(v.detach().numpy()) for k, v in model.state_dict().items()}
  x = np.random.default_rng(0).standard_normal((steps, batch, inputs)).astype(np.float32)
  xj, xt = jnp.asarray(x), torch.from_numpy(x).requires_grad_(True)
  env = {k: os.environ.get(k, "-") for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
  print(f"shape {shape}, fwd+bwd, float32; {env}")
  for impl in ("fused", "reference"):
    grad = jax.jit(jax.grad(lambda p, x, impl=impl: jnp.sum(jaxgru.gru(p, x, impl=impl)[0]), argnums=(0, 1)))
    faults, ms = per_call(lambda grad=grad: jax.block_until_ready(grad(params, xj)))
    print(f"  jaxgru impl={impl:<9} {faults:8.0f} faults/call {ms:8.2f} ms")

  def torch_step():
    model.zero_grad()
    xt.grad = None
    model(xt)[0].sum().backward()

  faults, ms = per_call(torch_step)
  print(f"  torch                  {faults:8.0f} faults/call {ms:8.2f} ms")


if __name__ == "__main__":
  main(tuple(int(a) for a in sys.argv[1].split("x")) if len(sys.argv) > 1 else (100, 64, 128, 128))
