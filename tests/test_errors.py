"""Every bad input gets a ValueError / TypeError naming the argument, before XLA sees it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxgru

I, H, T, B = 3, 4, 5, 2
PARAMS = jaxgru.init_gru_params(jax.random.key(0), I, H, num_layers=2, bidirectional=True)
CELL = jaxgru.init_gru_cell_params(jax.random.key(0), I, H)
X = jnp.ones((T, B, I))


def _without(key):
  return {k: v for k, v in PARAMS.items() if k != key}


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(x=jnp.ones((I,))), ValueError, r"x must be 2-D .* got shape \(3,\)"),
    (dict(x=jnp.ones((1, T, B, I))), ValueError, r"x must be 2-D"),
    (dict(x=jnp.ones((T, B, I + 1))), ValueError, r"x.shape\[-1\] must be input_size=3"),
    (dict(x=jnp.ones((T, B, I), jnp.int32)), TypeError, r"x must be a floating-point array"),
    (dict(x=jnp.ones((T, B, I), jnp.bfloat16)), TypeError, r"x has dtype bfloat16 but the params have dtype float32"),
    (dict(h0=jnp.zeros((2, B, H))), ValueError, r"h0 must have shape \(4, 2, 4\), got \(2, 2, 4\)"),
    (dict(h0=jnp.zeros((4, B, H + 1))), ValueError, r"h0 must have shape"),
    (dict(x=jnp.ones((T, I)), h0=jnp.zeros((4, B, H))), ValueError, r"h0 must have shape \(4, 4\)"),
    (dict(h0=jnp.zeros((4, B, H), jnp.float16)), TypeError, r"h0 has dtype float16"),
    (dict(lengths=jnp.array([1, 2, 3])), ValueError, r"lengths must have shape \(B,\) = \(2,\)"),
    (dict(lengths=jnp.array([[1, 2]])), ValueError, r"lengths must have shape"),
    (dict(lengths=jnp.array([1.0, 2.0])), TypeError, r"lengths must be an integer array"),
    (dict(lengths=jnp.array([0, 2])), ValueError, r"lengths must lie in \[1, T=5\], got \[0\]"),
    (dict(lengths=np.array([6, 2])), ValueError, r"lengths must lie in \[1, T=5\], got \[6\]"),
    (dict(x=jnp.ones((T, I)), lengths=jnp.array([2])), ValueError, r"lengths needs batched input"),
    (dict(dropout=1.0), ValueError, r"dropout must be a float in \[0, 1\), got 1.0"),
    (dict(dropout=-0.1), ValueError, r"dropout must be a float in \[0, 1\)"),
    (dict(dropout="0.5"), ValueError, r"dropout must be a float"),
    (dict(variant="cho"), ValueError, r"variant must be one of \('torch', 'classic'\), got 'cho'"),
    (dict(impl="cudnn"), ValueError, r"impl must be one of \('auto', 'fused', 'reference', 'native'\), got 'cudnn'"),
    (dict(impl="fused", variant="classic"), ValueError, r"impl='fused' implements variant='torch' only"),
    (dict(remat="yes"), TypeError, r"remat must be a bool, got 'yes'"),
    (dict(params=[1, 2]), TypeError, r"params must be a mapping"),
    (dict(params={"w": jnp.ones(3)}), ValueError, r"no key of the form weight_ih_l0"),
    (dict(params=_without("weight_hh_l0")), ValueError, r"missing key\(s\): weight_hh_l0"),
    (dict(params=_without("bias_hh_l1_reverse")), ValueError, r"missing key\(s\): bias_hh_l1_reverse"),
    (
      dict(params=PARAMS | {"weight_ih_l2": PARAMS["weight_ih_l1"]}),
      ValueError,
      r"missing key\(s\): weight_hh_l2, .*bias_hh_l2_reverse",
    ),
    (dict(params=PARAMS | {"lstm": jnp.ones(1)}), ValueError, r"unexpected key\(s\): 'lstm'"),
    (
      dict(params=PARAMS | {"weight_ih_l1": jnp.ones((12, 5))}),
      ValueError,
      r"size mismatch for weight_ih_l1: got shape \(12, 5\), expected \(12, 8\)",
    ),
    (
      dict(params=PARAMS | {"bias_ih_l0": PARAMS["bias_ih_l0"].astype(jnp.float16)}),
      TypeError,
      r"params must all have one dtype",
    ),
    (dict(params=PARAMS | {"bias_ih_l0": [1.0] * 12}), TypeError, r"params\['bias_ih_l0'\] must be an array"),
  ],
)
def test_gru_rejects(kwargs, error, match):
  args = dict(params=PARAMS, x=X) | kwargs
  params, x = args.pop("params"), args.pop("x")
  with pytest.raises(error, match=match):
    jaxgru.gru(params, x, **args)
  if "lengths" not in kwargs or kwargs["lengths"].shape != (B,) or kwargs["lengths"].dtype.kind != "i":
    with pytest.raises(error, match=match):  # the same error at trace time under jit
      jax.jit(lambda p, x: jaxgru.gru(p, x, **args))(params, x)


def test_all_layout_problems_in_one_message():
  bad = _without("weight_hh_l0") | {"extra": jnp.ones(1), "bias_ih_l1": jnp.ones(7)}
  with pytest.raises(ValueError) as err:
    jaxgru.gru(bad | {"weight_hh_l0": jnp.ones((12, 4))}, X)
  text = str(err.value)
  assert "unexpected key(s): 'extra'" in text and "size mismatch for bias_ih_l1" in text


@pytest.mark.parametrize(
  "args, error, match",
  [
    ((CELL, jnp.ones((1, B, I))), ValueError, r"x must be 1-D \(input_size,\) or 2-D"),
    ((CELL, jnp.ones((B, I + 2))), ValueError, r"x.shape\[-1\] must be input_size=3"),
    ((CELL, jnp.ones((B, I)), jnp.ones((B + 1, H))), ValueError, r"h must have shape \(2, 4\)"),
    ((CELL, jnp.ones((I,)), jnp.ones((B, H))), ValueError, r"h must have shape \(4,\)"),
    (({"weight_ih": CELL["weight_ih"]}, jnp.ones((B, I))), ValueError, r"missing key\(s\): weight_hh"),
    ((CELL | {"bias_x": CELL["bias_ih"]}, jnp.ones((B, I))), ValueError, r"unexpected key\(s\): 'bias_x'"),
    ((CELL, jnp.ones((B, I), jnp.float16)), TypeError, r"x has dtype float16"),
  ],
)
def test_gru_cell_rejects(args, error, match):
  with pytest.raises(error, match=match):
    jaxgru.gru_cell(*args)


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(hidden_size=0), ValueError, r"hidden_size must be a positive int, got 0"),
    (dict(input_size=2.5), ValueError, r"input_size must be a positive int"),
    (dict(num_layers=0), ValueError, r"num_layers must be a positive int"),
    (dict(dropout=1.5), ValueError, r"dropout must be a float in \[0, 1\)"),
    (dict(variant="lstm"), ValueError, r"variant must be one of"),
    (dict(impl="fast"), ValueError, r"impl must be one of"),
    (dict(remat=1), TypeError, r"remat must be a bool"),
    (dict(param_dtype=jnp.int32), TypeError, r"param_dtype must be a floating-point dtype"),
    (dict(dtype="int8"), TypeError, r"dtype must be a floating-point dtype"),
  ],
)
def test_module_constructors_reject(kwargs, error, match):
  args = dict(input_size=I, hidden_size=H) | kwargs
  with pytest.raises(error, match=match):
    jaxgru.GRU(**args, rngs=nnx.Rngs(0))
  with pytest.raises(error, match=match):
    jaxgru.linen.GRU(**args)
  if not {"dropout", "num_layers", "impl", "remat"} & set(kwargs):
    with pytest.raises(error, match=match):
      jaxgru.GRUCell(**args, rngs=nnx.Rngs(0))
    with pytest.raises(error, match=match):
      jaxgru.linen.GRUCell(**args)


def test_modules_reject_bad_calls():
  model = jaxgru.GRU(I, H, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"x.shape\[-1\] must be input_size=3"):
    model(jnp.ones((T, B, I + 1)))
  with pytest.raises(ValueError, match=r"h0 must have shape \(1, 2, 4\)"):
    model(X, jnp.zeros((1, B + 1, H)))
  cell = jaxgru.GRUCell(I, H, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"carry must have shape \(2, 2, 4\)"):
    cell(jnp.zeros((2, 3, H)), jnp.ones((2, 2, I)))
  with pytest.raises(ValueError, match="needs rngs"):
    cell.initialize_carry((B, I), carry_init=jax.nn.initializers.normal())
  no_dropout_stream = jaxgru.GRU(I, H, num_layers=2, dropout=0.1, rngs=nnx.Rngs(0))
  no_dropout_stream.rngs = None
  with pytest.raises(ValueError, match="needs rngs"):
    no_dropout_stream(X)
  with pytest.raises(ValueError, match="no 'dropout'"):
    jaxgru.GRU(I, H, num_layers=2, dropout=0.1, rngs=nnx.Rngs(params=0))


def test_init_rejects_bad_sizes_and_dtypes():
  with pytest.raises(ValueError, match="hidden_size must be a positive int"):
    jaxgru.init_gru_params(jax.random.key(0), 3, -1)
  with pytest.raises(TypeError, match="dtype must be a floating-point dtype"):
    jaxgru.init_gru_params(jax.random.key(0), 3, 4, dtype=jnp.int32)
