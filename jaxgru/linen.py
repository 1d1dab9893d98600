"""Flax Linen modules: ``GRU``, ``LSTM``, ``RNN`` (torch's layers) and ``GRUCell``, ``LSTMCell``,
``RNNCell`` (Linen recurrent cells).

Parameters live in the ``params`` collection under torch's names (``weight_ih_l0``, ...);
the maths is :func:`jaxgru.gru`, :func:`jaxgru.lstm`, :func:`jaxgru.rnn` and their cells. Dropout follows Linen's
convention: a ``deterministic`` flag and the ``dropout`` PRNG collection.

Example:
  >>> model = jaxgru.linen.GRU(input_size=3, hidden_size=8, num_layers=2)
  >>> variables = model.init(jax.random.key(0), jnp.ones((5, 2, 3)))
  >>> out, h_n = model.apply(variables, jnp.ones((5, 2, 3)))
  >>> out.shape, h_n.shape
  ((5, 2, 8), (2, 2, 8))
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgru import _policy, _validate
from jaxgru._core import gru
from jaxgru._lstm import _pair, lstm
from jaxgru._params import cell_shapes, expected_shapes
from jaxgru._rnn import rnn


def _torch_uniform(hidden_size: int):
  bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0  # torch's reset_parameters

  def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

  return init


class GRU(nn.Module):
  """``torch.nn.GRU`` as a Linen module: ``(output, h_n) = model.apply(variables, x, h0)``.

  Attributes:
    input_size: I, the features of each input step (torch's ``input_size``).
    hidden_size: H, the features of the state (torch's ``hidden_size``).
    num_layers: stacked layers, each reading the previous one's output.
    bias: whether the layers have ``bias_ih`` and ``bias_hh``.
    batch_first: whether ``x`` and the output are (B, T, ...) rather than (T, B, ...).
    dropout: probability of zeroing each output of every layer but the last, in training.
    bidirectional: whether each layer also runs from the last step down.
    variant: ``"torch"`` or ``"classic"`` (see :func:`jaxgru.gru_step`).
    impl: the implementation, as :func:`jaxgru.gru`'s ``impl``.
    remat: rematerialisation in the backward pass, as :func:`jaxgru.gru`'s ``remat``.
    dtype: compute dtype; None promotes the input and the parameters.
    param_dtype: storage dtype of the parameters.
    deterministic: disables dropout; may instead be passed at call time.
  """

  input_size: int
  hidden_size: int
  num_layers: int = 1
  bias: bool = True
  batch_first: bool = False
  dropout: float = 0.0
  bidirectional: bool = False
  variant: str = "torch"
  impl: str = "auto"
  remat: bool = False
  dtype: Any = None
  param_dtype: Any = jnp.float32
  deterministic: bool | None = None

  def __post_init__(self) -> None:
    _policy.check_gru_args(
      self.input_size,
      self.hidden_size,
      self.num_layers,
      self.dropout,
      self.variant,
      self.dtype,
      self.param_dtype,
      self.impl,
      bias=self.bias,
      batch_first=self.batch_first,
      bidirectional=self.bidirectional,
      remat=self.remat,
    )
    _validate.check_flag(self.deterministic, "deterministic", allow_none=True)
    super().__post_init__()

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    h0: jax.Array | None = None,
    *,
    lengths: jax.Array | None = None,
    resets: jax.Array | None = None,
    reset_state: jax.Array | None = None,
    deterministic: bool | None = None,
  ) -> tuple[jax.Array, jax.Array]:
    """Shapes as :func:`jaxgru.gru` (``lengths``, episode ``resets`` and ``reset_state`` as
    there); ``deterministic`` overrides the attribute."""
    shapes = expected_shapes(self.input_size, self.hidden_size, self.num_layers, self.bias, self.bidirectional)
    init = _torch_uniform(self.hidden_size)
    params = {name: self.param(name, init, shape, self.param_dtype) for name, shape in shapes.items()}
    params, (x, h0, reset_state) = _policy.promote(params, {"x": x, "h0": h0, "reset_state": reset_state}, self.dtype)
    _validate.check_flag(deterministic, "deterministic", allow_none=True)
    key = None
    if self.dropout > 0 and not nn.merge_param("deterministic", self.deterministic, deterministic):
      key = self.make_rng("dropout")
    dropout = self.dropout if key is not None else 0.0  # evaluation
    options = _policy.gru_options(self)
    return gru(
      params, x, h0, lengths=lengths, resets=resets, reset_state=reset_state, dropout=dropout, dropout_key=key, **options
    )


class GRUCell(nn.RNNCellBase):
  """``torch.nn.GRUCell``'s parameters and maths behind Linen's recurrent-cell contract.

  ``cell.apply(variables, carry, x) -> (carry, y)`` with ``y == carry``; ``initialize_carry``
  and ``num_feature_axes`` as Linen's cells, so it runs inside ``flax.linen.RNN``.

  Argument order: state first, as Flax's cells; torch's ``GRUCell`` and :func:`jaxgru.gru_cell`
  take the input first. With ``input_size == hidden_size`` both orders have the same shapes, and
  torch's order raises nothing and computes something else: call ``cell.apply(variables, h, x)``.

  Attributes:
    input_size: I, the features of each input.
    hidden_size: H, the features of the state.
    bias: whether the cell has ``bias_ih`` and ``bias_hh``.
    variant: ``"torch"`` or ``"classic"`` (see :func:`jaxgru.gru_step`).
    dtype: compute dtype; None promotes the input and the parameters.
    param_dtype: storage dtype of the parameters.
    carry_init: initialiser of :meth:`initialize_carry`'s state (zeros).
  """

  input_size: int
  hidden_size: int
  bias: bool = True
  variant: str = "torch"
  dtype: Any = None
  param_dtype: Any = jnp.float32
  carry_init: Any = nn.initializers.zeros_init()

  def __post_init__(self) -> None:
    _policy.check_gru_args(
      self.input_size, self.hidden_size, 1, 0.0, self.variant, self.dtype, self.param_dtype, cell=True, bias=self.bias
    )
    super().__post_init__()

  @nn.compact
  def __call__(self, carry: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One step, state first: ``(h_new, h_new) = cell.apply(variables, h, x)``.

    Args:
      carry: h (..., H), the state.
      inputs: x (..., I), the step's input.

    Returns:
      The new state twice, ``(h_new, h_new)``, as carry and as output, in the carry's dtype.
    """
    init = _torch_uniform(self.hidden_size)
    params = {
      name: self.param(name, init, shape, self.param_dtype)
      for name, shape in cell_shapes(self.input_size, self.hidden_size, self.bias).items()
    }
    h = _policy.run_cell(params, carry, inputs, self.dtype, _policy.cell_step("GRU", variant=self.variant))
    return h, h

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
    """The initial state for inputs of ``input_shape`` (..., I): ``carry_init`` (zeros) of (..., H)."""
    return self.carry_init(rng, tuple(input_shape[:-1]) + (self.hidden_size,), self.param_dtype)

  @property
  def num_feature_axes(self) -> int:
    return 1


def _layer_params(module: nn.Module, mode: str, proj_size: int = 0) -> dict[str, jax.Array]:
  """A layer's torch-named parameters, drawn as torch draws them."""
  shapes = expected_shapes(
    module.input_size, module.hidden_size, module.num_layers, module.bias, module.bidirectional, mode=mode, proj_size=proj_size
  )
  init = _torch_uniform(module.hidden_size)
  return {name: module.param(name, init, shape, module.param_dtype) for name, shape in shapes.items()}


def _dropout_key(module: nn.Module, deterministic: Any) -> tuple[float, jax.Array | None]:
  _validate.check_flag(deterministic, "deterministic", allow_none=True)
  if module.dropout > 0 and not nn.merge_param("deterministic", module.deterministic, deterministic):
    return module.dropout, module.make_rng("dropout")
  return 0.0, None


def _check_layer(module: nn.Module, mode: str, **extra: Any) -> None:
  _policy.check_gru_args(
    module.input_size, module.hidden_size, module.num_layers, module.dropout, "torch", module.dtype, module.param_dtype,
    module.impl, mode=mode, bias=module.bias, batch_first=module.batch_first, bidirectional=module.bidirectional,
    remat=module.remat, **extra,
  )  # fmt: skip
  _validate.check_flag(module.deterministic, "deterministic", allow_none=True)


class LSTM(nn.Module):
  """``torch.nn.LSTM`` as a Linen module: ``(output, (h_n, c_n)) = model.apply(variables, x, (h0, c0))``.

  Attributes:
    input_size: I, the features of each input step.
    hidden_size: H, the features of the cell state c.
    num_layers: stacked layers, each reading the previous one's output.
    bias: whether the layers have ``bias_ih`` and ``bias_hh``.
    batch_first: whether ``x`` and the output are (B, T, ...) rather than (T, B, ...).
    dropout: probability of zeroing each output of every layer but the last, in training.
    bidirectional: whether each layer also runs from the last step down.
    proj_size: P > 0 projects h to size P (``weight_hr``); 0 for none.
    impl: the implementation, as :func:`jaxgru.lstm`'s ``impl``.
    remat: rematerialisation in the backward pass.
    dtype: compute dtype; None promotes the input and the parameters.
    param_dtype: storage dtype of the parameters.
    deterministic: disables dropout; may instead be passed at call time.

  Example:
    >>> model = jaxgru.linen.LSTM(input_size=3, hidden_size=8, proj_size=4)
    >>> variables = model.init(jax.random.key(0), jnp.ones((5, 2, 3)))
    >>> out, (h_n, c_n) = model.apply(variables, jnp.ones((5, 2, 3)))
    >>> out.shape, h_n.shape, c_n.shape
    ((5, 2, 4), (1, 2, 4), (1, 2, 8))
  """

  input_size: int
  hidden_size: int
  num_layers: int = 1
  bias: bool = True
  batch_first: bool = False
  dropout: float = 0.0
  bidirectional: bool = False
  proj_size: int = 0
  impl: str = "auto"
  remat: bool = False
  dtype: Any = None
  param_dtype: Any = jnp.float32
  deterministic: bool | None = None

  def __post_init__(self) -> None:
    _check_layer(self, "LSTM", proj_size=self.proj_size)
    super().__post_init__()

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    hx: tuple[jax.Array, jax.Array] | None = None,
    *,
    lengths: jax.Array | None = None,
    resets: jax.Array | None = None,
    reset_state: tuple[jax.Array | None, jax.Array | None] | None = None,
    deterministic: bool | None = None,
  ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Shapes as :func:`jaxgru.lstm`; ``deterministic`` overrides the attribute."""
    (h0, c0), (r_h, r_c) = _pair(hx, "hx", "(h0, c0)"), _pair(reset_state, "reset_state", "(h, c)")
    arrays = {"x": x, "hx[0] (h0)": h0, "hx[1] (c0)": c0, "reset_state[0] (h)": r_h, "reset_state[1] (c)": r_c}
    params, (x, h0, c0, r_h, r_c) = _policy.promote(_layer_params(self, "LSTM", self.proj_size), arrays, self.dtype)
    dropout, key = _dropout_key(self, deterministic)
    return lstm(
      params, x, (h0, c0), lengths=lengths, resets=resets, reset_state=(r_h, r_c), dropout=dropout, dropout_key=key,
      batch_first=self.batch_first, impl=self.impl, remat=self.remat,
    )  # fmt: skip


class RNN(nn.Module):
  """``torch.nn.RNN`` (Elman, tanh or ReLU) as a Linen module: ``(output, h_n) = model.apply(variables, x, h0)``.

  Attributes:
    input_size: I, the features of each input step.
    hidden_size: H, the features of the state.
    num_layers: stacked layers, each reading the previous one's output.
    nonlinearity: ``"tanh"`` or ``"relu"``, as torch's.
    bias: whether the layers have ``bias_ih`` and ``bias_hh``.
    batch_first: whether ``x`` and the output are (B, T, ...) rather than (T, B, ...).
    dropout: probability of zeroing each output of every layer but the last, in training.
    bidirectional: whether each layer also runs from the last step down.
    impl: the implementation, as :func:`jaxgru.rnn`'s ``impl``.
    remat: rematerialisation in the backward pass.
    dtype: compute dtype; None promotes the input and the parameters.
    param_dtype: storage dtype of the parameters.
    deterministic: disables dropout; may instead be passed at call time.

  Example:
    >>> model = jaxgru.linen.RNN(input_size=3, hidden_size=8, nonlinearity="relu")
    >>> variables = model.init(jax.random.key(0), jnp.ones((5, 2, 3)))
    >>> model.apply(variables, jnp.ones((5, 2, 3)))[0].shape
    (5, 2, 8)
  """

  input_size: int
  hidden_size: int
  num_layers: int = 1
  nonlinearity: str = "tanh"
  bias: bool = True
  batch_first: bool = False
  dropout: float = 0.0
  bidirectional: bool = False
  impl: str = "auto"
  remat: bool = False
  dtype: Any = None
  param_dtype: Any = jnp.float32
  deterministic: bool | None = None

  def __post_init__(self) -> None:
    _check_layer(self, "RNN", nonlinearity=self.nonlinearity)
    super().__post_init__()

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    h0: jax.Array | None = None,
    *,
    lengths: jax.Array | None = None,
    resets: jax.Array | None = None,
    reset_state: jax.Array | None = None,
    deterministic: bool | None = None,
  ) -> tuple[jax.Array, jax.Array]:
    """Shapes as :func:`jaxgru.rnn`; ``deterministic`` overrides the attribute."""
    arrays = {"x": x, "h0": h0, "reset_state": reset_state}
    params, (x, h0, reset_state) = _policy.promote(_layer_params(self, "RNN"), arrays, self.dtype)
    dropout, key = _dropout_key(self, deterministic)
    return rnn(
      params, x, h0, nonlinearity=self.nonlinearity, lengths=lengths, resets=resets, reset_state=reset_state,
      dropout=dropout, dropout_key=key, batch_first=self.batch_first, impl=self.impl, remat=self.remat,
    )  # fmt: skip


class LSTMCell(nn.RNNCellBase):
  """``torch.nn.LSTMCell``'s parameters and maths behind Linen's recurrent-cell contract.

  ``cell.apply(variables, (h, c), x) -> ((h', c'), h')``: the carry is torch's pair (h, c)
  (Flax's own ``LSTMCell`` keeps (c, h)); it runs inside ``flax.linen.RNN``.

  Attributes:
    input_size: I, the features of each input.
    hidden_size: H, the features of h and c.
    bias: whether the cell has ``bias_ih`` and ``bias_hh``.
    dtype: compute dtype; None promotes the input and the parameters.
    param_dtype: storage dtype of the parameters.
    carry_init: initialiser of :meth:`initialize_carry`'s h and c (zeros).
  """

  input_size: int
  hidden_size: int
  bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  carry_init: Any = nn.initializers.zeros_init()

  def __post_init__(self) -> None:
    _policy.check_gru_args(
      self.input_size, self.hidden_size, 1, 0.0, "torch", self.dtype, self.param_dtype, cell=True, mode="LSTM", bias=self.bias
    )
    super().__post_init__()

  @nn.compact
  def __call__(self, carry: tuple[jax.Array, jax.Array], inputs: jax.Array) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    """One step, state first: ``((h', c'), h') = cell.apply(variables, (h, c), x)``.

    Args:
      carry: the pair (h, c), each (..., H).
      inputs: x (..., I), the step's input.

    Returns:
      The new carry (h', c') in the carry's dtypes, and h'.
    """
    init = _torch_uniform(self.hidden_size)
    shapes = cell_shapes(self.input_size, self.hidden_size, self.bias, "LSTM")
    params = {name: self.param(name, init, shape, self.param_dtype) for name, shape in shapes.items()}
    h, c = _policy.run_cell(params, tuple(_pair(carry, "carry", "(h, c)")), inputs, self.dtype, _policy.cell_step("LSTM"))
    return (h, c), h

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """The initial carry for inputs of ``input_shape`` (..., I): ``carry_init`` (zeros) of (..., H), twice."""
    shape = tuple(input_shape[:-1]) + (self.hidden_size,)
    k_h, k_c = jax.random.split(rng)
    return self.carry_init(k_h, shape, self.param_dtype), self.carry_init(k_c, shape, self.param_dtype)

  @property
  def num_feature_axes(self) -> int:
    return 1


class RNNCell(nn.RNNCellBase):
  """``torch.nn.RNNCell``'s parameters and maths behind Linen's recurrent-cell contract:
  ``cell.apply(variables, h, x) -> (h', h')``; it runs inside ``flax.linen.RNN``.

  Attributes:
    input_size: I, the features of each input.
    hidden_size: H, the features of the state.
    bias: whether the cell has ``bias_ih`` and ``bias_hh``.
    nonlinearity: ``"tanh"`` or ``"relu"``, as torch's.
    dtype: compute dtype; None promotes the input and the parameters.
    param_dtype: storage dtype of the parameters.
    carry_init: initialiser of :meth:`initialize_carry`'s state (zeros).
  """

  input_size: int
  hidden_size: int
  bias: bool = True
  nonlinearity: str = "tanh"
  dtype: Any = None
  param_dtype: Any = jnp.float32
  carry_init: Any = nn.initializers.zeros_init()

  def __post_init__(self) -> None:
    _policy.check_gru_args(
      self.input_size, self.hidden_size, 1, 0.0, "torch", self.dtype, self.param_dtype, cell=True, mode="RNN",
      nonlinearity=self.nonlinearity, bias=self.bias,
    )  # fmt: skip
    super().__post_init__()

  @nn.compact
  def __call__(self, carry: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One step, state first: ``(h', h') = cell.apply(variables, h, x)``.

    Args:
      carry: h (..., H), the state.
      inputs: x (..., I), the step's input.

    Returns:
      The new state twice, as carry and as output, in the carry's dtype.
    """
    init = _torch_uniform(self.hidden_size)
    shapes = cell_shapes(self.input_size, self.hidden_size, self.bias, "RNN")
    params = {name: self.param(name, init, shape, self.param_dtype) for name, shape in shapes.items()}
    h = _policy.run_cell(params, carry, inputs, self.dtype, _policy.cell_step("RNN", nonlinearity=self.nonlinearity))
    return h, h

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
    """The initial state for inputs of ``input_shape`` (..., I): ``carry_init`` (zeros) of (..., H)."""
    return self.carry_init(rng, tuple(input_shape[:-1]) + (self.hidden_size,), self.param_dtype)

  @property
  def num_feature_axes(self) -> int:
    return 1
