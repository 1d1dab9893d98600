"""Random torch GRUs and the one comparison every torch-vs-JAX test goes through."""

from __future__ import annotations

import numpy as np
import torch

import parity


def random_torch(module: torch.nn.Module, seed: int, dtype: torch.dtype) -> torch.nn.Module:
  """Every parameter, biases included, redrawn from U(-0.6, 0.6): zero biases hide bugs."""
  gen = torch.Generator().manual_seed(seed)
  module = module.to(dtype)
  with torch.no_grad():
    for p in module.parameters():
      p.copy_(torch.rand(p.shape, generator=gen, dtype=dtype) * 1.2 - 0.6)
  return module


def state_dict_np(module: torch.nn.Module) -> dict[str, np.ndarray]:
  return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def assert_runs_close(jax_run: dict, torch_run: dict, tol: float) -> None:
  """Outputs, final states and every gradient agree: max abs error <= ``tol`` times the
  largest magnitude of the reference, or times 1 when that is below 1 (then plainly absolute)."""
  pairs = {key: (jax_run[key], torch_run[key]) for key in ("output", "h_n")}
  if "grads" in torch_run:
    assert set(jax_run["grads"]) == set(torch_run["grads"]), (set(jax_run["grads"]), set(torch_run["grads"]))
    pairs |= {f"grad {k}": (jax_run["grads"][k], v) for k, v in torch_run["grads"].items()}
  bad = {}
  for key, (got, want) in pairs.items():
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (key, got.shape, want.shape)
    if not got.size:
      continue
    err, scale = float(np.max(np.abs(got - want))), max(1.0, float(np.max(np.abs(want))))
    if not err <= tol * scale:
      bad[key] = f"{err:.3g} (scale {scale:.3g})"
  assert not bad, f"max abs errors above {tol} x scale: {bad}"


def compare_with_torch(module, x, h0=None, *, lengths=None, seed=0, tol, variant="torch"):
  """Runs ``module`` (torch) and :func:`jaxgru.gru` on the same inputs and random cotangents."""
  cell = isinstance(module, torch.nn.GRUCell)
  torch_run = parity.run_torch(module, x, h0, lengths=lengths)
  rng = np.random.default_rng(seed + 1)
  cotangents = tuple(rng.standard_normal(torch_run[k].shape).astype(x.dtype) for k in ("output", "h_n"))
  torch_run = parity.run_torch(module, x, h0, lengths=lengths, cotangents=cotangents)
  jax_run = parity.run_jax(
    state_dict_np(module),
    x,
    h0,
    cell=cell,
    batch_first=getattr(module, "batch_first", False),
    lengths=lengths,
    cotangents=cotangents,
    variant=variant,
  )
  assert_runs_close(jax_run, torch_run, tol)
  return jax_run, torch_run
