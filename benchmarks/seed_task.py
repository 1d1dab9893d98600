"""The seed's whole task timed end to end both ways: 200 full-batch Adam epochs of GRU(1, 16) + Linear.

torch runs the tutorial's own loop (``../shared/seed/``); jaxgru runs :mod:`parity.sine.task`'s
compiled loop (all 200 epochs inside one ``lax.scan``), its compile time measured apart.
Run alone: ``python -m benchmarks.seed_task``.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from parity.sine import task as sine_task

EPOCHS = 200
GAP_S = 0.1  # untimed pause after each torch run, then an untimed jaxgru run, as in the grid's blocks


def _torch_run(data: sine_task.SineData, seed: int, device: str = "cpu") -> float:
  torch.manual_seed(seed)
  model = sine_task.TorchSineModel(16).to(device)
  criterion = torch.nn.MSELoss()
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
  x, y = torch.from_numpy(data.x_train).to(device), torch.from_numpy(data.y_train).to(device)
  if device == "cuda":
    torch.cuda.synchronize()
  start = time.perf_counter()
  for epoch in range(EPOCHS):  # the tutorial's loop, its loss printout every 20 epochs included as .item()
    model.train()
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    if (epoch + 1) % 20 == 0:
      loss.item()
  if device == "cuda":
    torch.cuda.synchronize()
  return time.perf_counter() - start


def run(device: str = "cpu", repeats: int = 5) -> dict[str, Any]:
  """Times both; returns seconds (medians over ``repeats`` interleaved runs) and the ratios.

  ``steady_speedup`` is torch's median loop over jaxgru's median compiled run;
  ``total_speedup`` is torch's median loop over jaxgru's compile plus first run.
  """
  data = sine_task.make_data(0)
  x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
  opt = optax.adam(1e-3)
  params = sine_task.init_params(jax.random.key(0))
  opt_state = opt.init(params)
  train = sine_task.make_train_fn(opt)
  start = time.perf_counter()
  compiled = train.lower(params, opt_state, x, y, epochs=EPOCHS).compile()
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  jax.block_until_ready(compiled(params, opt_state, x, y))
  first_s = time.perf_counter() - start
  torch_first_s = _torch_run(data, 0, device)  # torch's first loop in this process, for the totals
  torch_s, jax_s = [], []
  for rep in range(repeats):
    torch_s.append(_torch_run(data, rep, device))
    time.sleep(GAP_S)  # untimed: torch's OpenMP threads stop spinning (benchmarks/NOTES.md, entry 11c) ...
    jax.block_until_ready(compiled(params, opt_state, x, y))  # ... and idle cores wake up again
    start = time.perf_counter()
    jax.block_until_ready(compiled(params, opt_state, x, y))
    jax_s.append(time.perf_counter() - start)
  torch_total, jax_steady = float(np.median(torch_s)), float(np.median(jax_s))
  return {
    "epochs": EPOCHS,
    "torch_s": torch_total,
    "torch_first_s": torch_first_s,
    "repeats": repeats,
    "torch_threads": torch.get_num_threads(),
    "jax_compile_s": compile_s,
    "jax_first_run_s": first_s,
    "jax_steady_s": jax_steady,
    "steady_speedup": torch_total / jax_steady,
    "total_speedup": torch_total / (compile_s + first_s),
  }


def describe(r: dict[str, Any]) -> str:
  return (
    f"seed task, {r['epochs']} epochs: torch loop {r['torch_s'] * 1e3:.0f} ms ({r['torch_threads']} threads; "
    f"first in the process {r['torch_first_s'] * 1e3:.0f} ms); "
    f"jaxgru compiled loop {r['jax_steady_s'] * 1e3:.1f} ms steady ({r['steady_speedup']:.1f}x), compile "
    f"{r['jax_compile_s']:.2f} s, first run {r['jax_first_run_s'] * 1e3:.0f} ms, total incl. compile "
    f"{r['jax_compile_s'] + r['jax_first_run_s']:.2f} s ({r['total_speedup']:.2f}x torch's total)"
  )


if __name__ == "__main__":
  print(describe(run()))
