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
    (dict(dropout=1.5), ValueError, r"dropout must be a float in \[0, 1\], got 1.5"),
    (dict(dropout=-0.1), ValueError, r"dropout must be a float in \[0, 1\]"),
    (dict(dropout="0.5"), ValueError, r"dropout must be a float"),
    (dict(dropout=0.5), ValueError, r"dropout=0.5 needs randomness: pass dropout_key .* or dropout=0.0 for evaluation"),
    (dict(x=jnp.ones((0, B, I))), ValueError, r"x must have at least one time step .* got shape \(0, 2, 3\)"),
    (dict(x=jnp.ones((B, 0, I)), batch_first=True), ValueError, r"x must have at least one time step"),
    (dict(x=jnp.ones((0, I))), ValueError, r"x must have at least one time step .* got shape \(0, 3\)"),
    (dict(x=jnp.ones((T, B, I), jnp.complex64)), TypeError, r"x must be a floating-point array, got dtype complex64"),
    (dict(batch_first="False"), TypeError, r"batch_first must be a bool, got 'False' of type str"),
    (dict(batch_first=1), TypeError, r"batch_first must be a bool"),
    (dict(variant="cho"), ValueError, r"variant must be one of \('torch', 'classic'\), got 'cho'"),
    (dict(impl="cudnn"), ValueError, r"impl must be one of \('auto', 'fused', 'reference', 'pallas', 'native'\), got 'cudnn'"),
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
    (
      dict(params={"weight_ih_l0": jnp.ones((3 * H, 0)), "weight_hh_l0": jnp.ones((3 * H, H))}, x=jnp.ones((T, B, 0))),
      ValueError,
      r"params\['weight_ih_l0'\] has shape \(12, 0\): input_size 0, but a torch.nn.GRU needs input_size >= 1",
    ),
    (
      dict(params={"weight_ih_l0": jnp.ones((0, I)), "weight_hh_l0": jnp.ones((0, 0))}),
      ValueError,
      r"params\['weight_hh_l0'\] has shape \(0, 0\): hidden_size 0, but a torch.nn.GRU needs hidden_size >= 1",
    ),
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
    (dict(input_size=0), ValueError, r"input_size must be a positive int, got 0"),
    (dict(input_size=2.5), ValueError, r"input_size must be a"),
    (dict(hidden_size=-1), ValueError, r"hidden_size must be a"),
    (dict(num_layers=0), ValueError, r"num_layers must be a positive int"),
    (dict(dropout=1.5), ValueError, r"dropout must be a float in \[0, 1\]"),
    (dict(variant="lstm"), ValueError, r"variant must be one of"),
    (dict(impl="fast"), ValueError, r"impl must be one of"),
    (dict(remat=1), TypeError, r"remat must be a bool"),
    (dict(bias="False"), TypeError, r"bias must be a bool, got 'False' of type str"),
    (dict(bias=np.array(True)), TypeError, r"bias must be a bool"),
    (dict(batch_first="False"), TypeError, r"batch_first must be a bool, got 'False'"),
    (dict(bidirectional=1), TypeError, r"bidirectional must be a bool, got 1"),
    (dict(deterministic="yes"), TypeError, r"deterministic must be a bool, got 'yes'"),
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
  gru_only = {"dropout", "num_layers", "impl", "remat", "batch_first", "bidirectional", "deterministic"}
  if not gru_only & set(kwargs) and kwargs.get("hidden_size", 1) != 0 and kwargs.get("input_size", 1) != 0:
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


@pytest.mark.parametrize("bad", [dict(bias="False"), dict(bidirectional="no"), dict(bias=1)])
def test_init_and_shapes_reject_non_bool_flags(bad):
  name = next(iter(bad))
  with pytest.raises(TypeError, match=rf"{name} must be a bool"):
    jaxgru.init_gru_params(jax.random.key(0), I, H, **bad)
  with pytest.raises(TypeError, match=rf"{name} must be a bool"):
    jaxgru.expected_shapes(I, H, 1, **(dict(bias=True, bidirectional=False) | bad))
  if name == "bias":
    with pytest.raises(TypeError, match=r"bias must be a bool"):
      jaxgru.init_gru_cell_params(jax.random.key(0), I, H, **bad)


def test_modules_reject_non_bool_flags_at_call():
  model = jaxgru.GRU(I, H, rngs=nnx.Rngs(0))
  with pytest.raises(TypeError, match=r"deterministic must be a bool, got 'no'"):
    model(X, deterministic="no")
  with pytest.raises(TypeError, match=r"deterministic must be a bool"):
    model.set_view(deterministic=0)
  model.deterministic = "yes"  # set by hand: checked when used
  with pytest.raises(TypeError, match=r"deterministic must be a bool"):
    model(X)
  linen = jaxgru.linen.GRU(I, H, num_layers=2, dropout=0.5)
  variables = linen.init(jax.random.key(0), X, deterministic=True)
  with pytest.raises(TypeError, match=r"deterministic must be a bool, got 'no'"):
    linen.apply(variables, X, deterministic="no")


def test_modules_reject_complex_input():
  """Flax's dtype policy would cast complex to real, dropping the imaginary part: torch rejects it."""
  z = X.astype(jnp.complex64)
  match = r"must be a real array \(torch's GRU rejects complex input\), got dtype complex64"
  model = jaxgru.GRU(I, H, rngs=nnx.Rngs(0))
  with pytest.raises(TypeError, match=r"x " + match):
    model(z)
  with pytest.raises(TypeError, match=r"h0 " + match):
    model(X, jnp.zeros((1, B, H), jnp.complex64))
  linen = jaxgru.linen.GRU(I, H)
  with pytest.raises(TypeError, match=r"x " + match):
    linen.init(jax.random.key(0), z)
  cell = jaxgru.GRUCell(I, H, rngs=nnx.Rngs(0))
  with pytest.raises(TypeError, match=r"inputs " + match):
    cell(jnp.zeros((B, H)), z[0])
  with pytest.raises(TypeError, match=r"carry " + match):
    cell(jnp.zeros((B, H), jnp.complex64), X[0])
  with pytest.raises(TypeError, match=r"inputs " + match):
    jaxgru.linen.GRUCell(I, H).init(jax.random.key(0), jnp.zeros((B, H)), z[0])
  with pytest.raises(TypeError, match=r"weight_ih_l0'\] is complex"):
    model.load_state_dict(model.state_dict() | {"weight_ih_l0": model.weight_ih_l0[...].astype(jnp.complex64)})
  with pytest.raises(TypeError, match=r"x must be a floating-point array, got dtype complex64"):
    jaxgru.gru_cell(CELL, z[0])
