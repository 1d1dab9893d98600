"""jaxgru.gru and jaxgru.gru_cell against torch.nn.GRU / GRUCell: outputs, states, gradients."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from _helpers import compare_with_torch, needs_native, random_torch

I, H, T, B = 3, 5, 6, 4


@dataclasses.dataclass(frozen=True)
class Case:
  layers: int = 1
  bidirectional: bool = False
  batch_first: bool = False
  bias: bool = True
  lengths: str | None = None  # None, "sorted", "unsorted", "full", "ones"
  unbatched: bool = False
  h0: bool = False

  def __str__(self) -> str:
    return "-".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items() if v != getattr(Case, k))


CASES = [
  Case(),
  Case(h0=True),
  Case(batch_first=True, bias=False, h0=True),
  Case(layers=2, h0=True),
  Case(layers=3, batch_first=True),
  Case(bidirectional=True, h0=True),
  Case(layers=2, bidirectional=True, batch_first=True, h0=True),
  Case(layers=3, bidirectional=True, bias=False, h0=True),
  Case(unbatched=True, h0=True),
  Case(layers=2, bidirectional=True, unbatched=True),
  Case(layers=3, bidirectional=True, batch_first=True, unbatched=True, h0=True),
  Case(lengths="sorted", h0=True),
  Case(layers=2, bidirectional=True, lengths="unsorted", h0=True),
  Case(bidirectional=True, batch_first=True, bias=False, lengths="unsorted"),
  Case(layers=3, bidirectional=True, batch_first=True, lengths="ones", h0=True),
  Case(layers=2, batch_first=True, lengths="full"),
  Case(layers=2, bidirectional=True, bias=False, lengths="ones", h0=True),
  Case(layers=3, lengths="unsorted", h0=True),
  Case(bidirectional=True, lengths="full", h0=True),
  Case(layers=2, bidirectional=True, batch_first=True, lengths="sorted"),
]

LENGTHS = {
  "sorted": [T, 5, 3, 2],
  "unsorted": [3, T, 1, 4],
  "full": [T] * B,
  "ones": [1, T, 1, 2],
}


@pytest.mark.parametrize("impl", ["fused", "reference", pytest.param("native", marks=needs_native)])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_gru_matches_torch(case: Case, impl, precision):
  module = torch.nn.GRU(I, H, case.layers, bias=case.bias, batch_first=case.batch_first, bidirectional=case.bidirectional)
  module = random_torch(module, seed=hash(str(case)) % 1000, dtype=precision.torch_dtype)
  rng = np.random.default_rng(0)
  shape = (T, I) if case.unbatched else ((B, T, I) if case.batch_first else (T, B, I))
  x = rng.standard_normal(shape).astype(precision.np_dtype)
  layers_dirs = case.layers * (2 if case.bidirectional else 1)
  h0 = rng.standard_normal((layers_dirs, H) if case.unbatched else (layers_dirs, B, H)).astype(precision.np_dtype)
  lengths = None if case.lengths is None else np.array(LENGTHS[case.lengths])
  compare_with_torch(module, x, h0 if case.h0 else None, lengths=lengths, tol=precision.tol, impl=impl)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("with_h", [False, True])
def test_gru_cell_matches_torch(bias, unbatched, with_h, precision):
  module = random_torch(torch.nn.GRUCell(I, H, bias=bias), seed=7, dtype=precision.torch_dtype)
  rng = np.random.default_rng(1)
  x = rng.standard_normal((I,) if unbatched else (B, I)).astype(precision.np_dtype)
  h = rng.standard_normal((H,) if unbatched else (B, H)).astype(precision.np_dtype) if with_h else None
  compare_with_torch(module, x, h, tol=precision.tol)


def test_longer_wider_sequence_float32():
  """A longer run at the float32 tolerance, where rounding has room to accumulate."""
  import jax

  with jax.default_matmul_precision("highest"):
    module = random_torch(torch.nn.GRU(16, 32, 2, bidirectional=True), seed=3, dtype=torch.float32)
    x = np.random.default_rng(2).standard_normal((50, 8, 16)).astype(np.float32)
    compare_with_torch(module, x, lengths=np.array([50, 17, 1, 33, 50, 2, 49, 25]), tol=1e-5)
