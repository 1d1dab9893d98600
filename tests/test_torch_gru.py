"""jaxgru.gru and jaxgru.gru_cell against torch.nn.GRU / GRUCell: outputs, states, gradients."""

from __future__ import annotations

import dataclasses
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from _helpers import EXPLICIT_IMPLS, compare_with_torch, needs_native, random_torch
from conftest import FLOAT32, FLOAT64
from flax import nnx

import jaxgru

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


# float64 proves the maths in every case; float32 the kernels, in the cases that reach every
# different code path of theirs (layers, both directions, no bias, lengths, batch-first, unbatched).
# The reference is the engine's plain scan, which the LSTM's and the RNN's grids run too
# (tests/test_torch_cells.py): it runs those five cases in float64 and two in float32.
FLOAT32_CASES = [CASES[i] for i in (2, 7, 10, 12, 13)]
GRID = [(case, FLOAT64, impl) for case in CASES for impl in ("fused", "native")]
GRID += [(case, FLOAT32, impl) for case in FLOAT32_CASES for impl in ("fused", "native")]
GRID += [(case, FLOAT64, "reference") for case in FLOAT32_CASES] + [(case, FLOAT32, "reference") for case in FLOAT32_CASES[2:4]]


@pytest.mark.parametrize(
  "case, precision, impl",
  [pytest.param(c, p, i, marks=needs_native if i == "native" else (), id=f"{p.name}-{c}-{i}") for c, p, i in GRID],
  indirect=["precision"],
)
def test_gru_matches_torch(case: Case, impl, precision):
  module = torch.nn.GRU(I, H, case.layers, bias=case.bias, batch_first=case.batch_first, bidirectional=case.bidirectional)
  module = random_torch(module, seed=zlib.crc32(str(case).encode()) % 1000, dtype=precision.torch_dtype)
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
  with jax.default_matmul_precision("highest"):
    module = random_torch(torch.nn.GRU(16, 32, 2, bidirectional=True), seed=3, dtype=torch.float32)
    x = np.random.default_rng(2).standard_normal((50, 8, 16)).astype(np.float32)
    compare_with_torch(module, x, lengths=np.array([50, 17, 1, 33, 50, 2, 49, 25]), tol=1e-5)


PADDING_CASES = [(1, False, np.nan), (1, True, np.inf), (2, False, -np.inf), (2, True, np.nan)]


@pytest.mark.parametrize("impl", EXPLICIT_IMPLS)
@pytest.mark.parametrize("layers, bidirectional, pad", PADDING_CASES, ids=lambda v: str(v))
def test_nan_padding_past_lengths_leaves_gradients_finite(layers, bidirectional, pad, impl, x64):
  """torch's packed sequence never reads x past a length: NaN or inf there must not reach any
  gradient (a masked-out branch of a ``where`` still carries NaN into the VJP)."""
  module = random_torch(torch.nn.GRU(I, H, layers, bidirectional=bidirectional), seed=layers, dtype=torch.float64)
  rng = np.random.default_rng(3)
  lengths = np.array([T, 2, 5, 1])
  x = rng.standard_normal((T, B, I))
  x[np.arange(T)[:, None] >= lengths[None, :]] = pad
  h0 = rng.standard_normal((layers * (2 if bidirectional else 1), B, H))
  compare_with_torch(module, x, h0, lengths=lengths, tol=1e-10, impl=impl)


@pytest.mark.parametrize("impl", EXPLICIT_IMPLS)
def test_empty_batch_like_torch(impl):
  """B = 0: torch returns (T, 0, D*H) and (L*D, 0, H) and its backward gives zero gradients."""
  module = torch.nn.GRU(I, H, 2, bidirectional=True)
  x = np.zeros((T, 0, I), np.float32)
  want_out, want_h = module(torch.from_numpy(x))
  params = {k: v.detach().numpy() for k, v in module.state_dict().items()}

  def loss(p, x, h0):
    out, h_n = jaxgru.gru(p, x, h0, impl=impl)
    return out.sum() + h_n.sum()

  out, h_n = jax.jit(lambda p, x: jaxgru.gru(p, x, impl=impl))(params, x)
  assert out.shape == tuple(want_out.shape) and h_n.shape == tuple(want_h.shape)
  grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(params, x, np.zeros((4, 0, H), np.float32))
  assert all(not np.any(g) for g in jax.tree.leaves(grads))
  out_bf, _ = jaxgru.gru(params, np.zeros((0, T, I), np.float32), batch_first=True, impl=impl)
  assert out_bf.shape == (0, T, 2 * H)
  # torch refuses lengths for an empty batch: so does jaxgru
  with pytest.raises(RuntimeError, match="Cannot pack empty tensors"):
    torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.zeros(0, dtype=torch.long), enforce_sorted=False)
  with pytest.raises(ValueError, match="lengths cannot describe an empty batch .*Cannot pack empty tensors"):
    jaxgru.gru(params, np.zeros((0, T, I), np.float32), batch_first=True, lengths=np.zeros((0,), int), impl=impl)

  model = jaxgru.GRU(I, H, 2, bidirectional=True, impl=impl, rngs=nnx.Rngs(0))
  assert nnx.jit(lambda m, x: m(x)[0])(model, x).shape == (T, 0, 2 * H)
  nnx_grads = nnx.grad(lambda m: m(x)[1].sum())(model)
  assert all(not np.any(g) for g in jax.tree.leaves(nnx_grads))
  linen = jaxgru.linen.GRU(I, H, 2, bidirectional=True, impl=impl)
  variables = linen.init(jax.random.key(0), x)
  assert jax.jit(linen.apply)(variables, x)[1].shape == (4, 0, H)
  linen_grads = jax.grad(lambda v: linen.apply(v, x)[0].sum())(variables)
  assert all(not np.any(g) for g in jax.tree.leaves(linen_grads))


def test_torch_tensors_as_params():
  """A torch state dict (or its parameters, which require grad) works as params, torch never imported by jaxgru."""
  module = random_torch(torch.nn.GRU(I, H, 2, bidirectional=True), seed=5, dtype=torch.float32)
  x = np.random.default_rng(4).standard_normal((T, B, I)).astype(np.float32)
  want = jaxgru.gru({k: v.detach().numpy() for k, v in module.state_dict().items()}, x)
  for params in (module.state_dict(), dict(module.named_parameters())):
    got = jaxgru.gru(params, torch.from_numpy(x))
    for a, b in zip(got, want, strict=True):
      np.testing.assert_array_equal(a, b)
  cell = random_torch(torch.nn.GRUCell(I, H), seed=6, dtype=torch.float32)
  h = jaxgru.gru_cell(dict(cell.named_parameters()), x[0])
  np.testing.assert_array_equal(h, jaxgru.gru_cell({k: v.detach().numpy() for k, v in cell.state_dict().items()}, x[0]))
  model = jaxgru.GRU(I, H, 2, bidirectional=True, rngs=nnx.Rngs(0))
  model.load_state_dict(dict(module.named_parameters()))
  np.testing.assert_array_equal(model(x)[0], want[0])
  half = {k: v.to(torch.bfloat16) for k, v in module.state_dict().items()}
  assert jaxgru.gru(half, x.astype(jnp.bfloat16))[0].dtype == jnp.bfloat16  # a dtype NumPy lacks, through DLPack


@pytest.mark.parametrize("input_size, hidden_size", [(I, 0), (0, H), (0, 0)])
def test_gru_cell_with_zero_sizes_like_torch(input_size, hidden_size, x64):
  """torch's GRUCell(10, 0) returns (B, 0); GRUCell(0, H) runs on the state alone."""
  module = random_torch(torch.nn.GRUCell(input_size, hidden_size), seed=8, dtype=torch.float64)
  rng = np.random.default_rng(5)
  compare_with_torch(module, rng.standard_normal((B, input_size)), rng.standard_normal((B, hidden_size)), tol=1e-10)
  for cell in (jaxgru.GRUCell(input_size, hidden_size, rngs=nnx.Rngs(0)), jaxgru.linen.GRUCell(input_size, hidden_size)):
    x = jnp.ones((B, input_size))
    if isinstance(cell, nnx.Module):
      carry, y = cell(cell.initialize_carry(x.shape), x)
    else:
      carry = cell.initialize_carry(jax.random.key(0), x.shape)
      carry, y = cell.apply(cell.init(jax.random.key(0), carry, x), carry, x)
    assert carry.shape == y.shape == (B, hidden_size)
