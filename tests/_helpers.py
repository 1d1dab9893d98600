"""Random torch GRUs, and the one comparison every torch-vs-JAX test goes through (``parity``'s)."""

from __future__ import annotations

import jax
import pytest
import torch

import jaxgru
import parity

# impl="native" needs the C++ kernel, which a machine without a compiler does not build.
# An explicit-sharding mesh set for a block of code: jax.set_mesh, from jax 0.8 (the oldest
# supported JAX, 0.7, has jax.sharding.use_mesh instead; the guide 'Supported versions' says so).
needs_set_mesh = pytest.mark.skipif(
  not hasattr(jax, "set_mesh"), reason="explicit-sharding meshes: jax.set_mesh needs jax >= 0.8"
)
needs_native = pytest.mark.skipif(not jaxgru.native_available(), reason=f"native kernel: {jaxgru.native_status()}")


def random_torch(module: torch.nn.Module, seed: int, dtype: torch.dtype) -> torch.nn.Module:
  """Every parameter, biases included, redrawn from U(-0.6, 0.6): zero biases hide bugs."""
  gen = torch.Generator().manual_seed(seed)
  module = module.to(dtype)
  with torch.no_grad():
    for p in module.parameters():
      p.copy_(torch.rand(p.shape, generator=gen, dtype=dtype) * 1.2 - 0.6)
  return module


def compare_with_torch(module, x, h0=None, *, lengths=None, seed=0, tol=None, impl=None, remat=False) -> parity.Report:
  """``module`` (torch) against ``parity.from_torch(module)``: outputs, ``h_n`` and the gradients
  of every parameter, ``x`` and ``h0`` within ``tol`` (see :func:`parity.compare`); ``impl``, when
  given, and ``remat`` set the :class:`jaxgru.GRU`'s ``impl`` and ``remat`` (see :func:`jaxgru.gru`)."""
  jax_module = parity.from_torch(module)
  if impl is not None:
    jax_module.impl, jax_module.remat = impl, remat
  return parity.assert_close(module, jax_module, x, h0, lengths=lengths, seed=seed, tol=tol)
