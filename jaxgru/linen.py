"""Flax Linen modules: ``GRU`` (``torch.nn.GRU``) and ``GRUCell`` (a Linen recurrent cell).

Parameters live in the ``params`` collection under torch's names (``weight_ih_l0``, ...);
the maths is :func:`jaxgru.gru` / :func:`jaxgru.gru_cell`. Dropout follows Linen's
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
from jaxgru._params import cell_shapes, expected_shapes


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
    h = _policy.run_cell(params, carry, inputs, self.dtype, self.variant)
    return h, h

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
    """The initial state for inputs of ``input_shape`` (..., I): ``carry_init`` (zeros) of (..., H)."""
    return self.carry_init(rng, tuple(input_shape[:-1]) + (self.hidden_size,), self.param_dtype)

  @property
  def num_feature_axes(self) -> int:
    return 1
