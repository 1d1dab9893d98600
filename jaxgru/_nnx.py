"""Flax NNX modules: ``GRU`` (``torch.nn.GRU``) and ``GRUCell`` (a Flax recurrent cell).

They own parameters (``nnx.Param`` named exactly like torch's), initialisation and dtype
policy; the maths is :func:`jaxgru.gru` / :func:`jaxgru.gru_cell`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgru import _policy, _validate
from jaxgru._core import gru
from jaxgru._params import as_params, check_layout, init_gru_cell_params, init_gru_params


def _dropout_stream(rngs: nnx.Rngs | nnx.RngStream | None, required: bool = True) -> nnx.RngStream | None:
  """``rngs``' ``dropout`` stream (``default`` if absent); None when it has none and none is ``required``."""
  if rngs is None or isinstance(rngs, nnx.RngStream):
    return rngs
  try:
    return rngs["dropout"]
  except (KeyError, AttributeError) as err:
    if not required:
      return None
    raise ValueError(
      "rngs has no 'dropout' (or 'default') stream, which a GRU with dropout > 0 needs; "
      "pass e.g. nnx.Rngs(0) or nnx.Rngs(params=0, dropout=1)"
    ) from err


class _TorchParams(nnx.Module):
  """Holds torch-named ``nnx.Param`` attributes and moves them to and from a state dict."""

  _param_names: tuple[str, ...]

  def _set_params(self, params: Mapping[str, jax.Array]) -> None:
    self._param_names = tuple(params)
    for name, value in params.items():
      setattr(self, name, nnx.Param(value))

  def state_dict(self) -> dict[str, jax.Array]:
    """The parameters in torch's layout: ``{"weight_ih_l0": (3H, I) array, ...}``."""
    return {name: getattr(self, name)[...] for name in self._param_names}

  def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
    """Replaces every parameter from a torch-layout mapping, strictly like torch's
    ``load_state_dict(strict=True)``: missing, unexpected and wrongly shaped keys are all
    reported in one error. Values (JAX or NumPy arrays, torch tensors) are cast to each
    parameter's dtype, as torch copies; complex values are rejected, as torch does."""
    current = self.state_dict()
    check_layout(state_dict, {k: v.shape for k, v in current.items()}, type(self).__name__)
    new = as_params(state_dict)
    for name, old in current.items():
      if jnp.issubdtype(new[name].dtype, jnp.complexfloating):
        raise TypeError(f"state_dict[{name!r}] is complex ({new[name].dtype}); parameters are real")
      getattr(self, name)[...] = new[name].astype(old.dtype)


class GRU(_TorchParams):
  """``torch.nn.GRU`` as a Flax NNX module.

  Example:
    >>> model = jaxgru.GRU(3, 8, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))
    >>> out, h_n = model(jnp.ones((5, 2, 3)))
    >>> out.shape, h_n.shape
    ((5, 2, 16), (4, 2, 8))

  Args:
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
    deterministic: disables dropout; ``model.eval()`` / ``model.train()`` set it.
    rngs: ``params`` stream for initialisation (torch's U(-1/sqrt(H), 1/sqrt(H))); a fork of
      the ``dropout`` stream (``default`` if absent) is kept for dropout, as ``nnx.Dropout``
      does, so that ``model.dropout`` may also be raised after construction.
  """

  def __init__(
    self,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    batch_first: bool = False,
    dropout: float = 0.0,
    bidirectional: bool = False,
    *,
    variant: str = "torch",
    impl: str = "auto",
    remat: bool = False,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    deterministic: bool = False,
    rngs: nnx.Rngs,
  ):
    flags = dict(bias=bias, batch_first=batch_first, bidirectional=bidirectional, remat=remat, deterministic=deterministic)
    self.dropout = _policy.check_gru_args(
      input_size, hidden_size, num_layers, dropout, variant, dtype, param_dtype, impl, **flags
    )
    self.impl, self.remat = impl, bool(remat)
    self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
    self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
    self.variant, self.dtype, self.param_dtype = variant, dtype, param_dtype
    self.deterministic = bool(deterministic)
    self._set_params(
      init_gru_params(rngs.params(), input_size, hidden_size, num_layers, self.bias, self.bidirectional, param_dtype)
    )
    stream = _dropout_stream(rngs, required=self.dropout > 0)
    self.rngs = nnx.data(None) if stream is None else stream.fork()

  def __call__(
    self,
    x: jax.Array,
    h0: jax.Array | None = None,
    *,
    lengths: jax.Array | None = None,
    resets: jax.Array | None = None,
    reset_state: jax.Array | None = None,
    deterministic: bool | None = None,
    rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
  ) -> tuple[jax.Array, jax.Array]:
    """Runs the GRU: ``(output, h_n) = model(x, h0)``, shapes as :func:`jaxgru.gru`.

    Args:
      x: (T, B, I), (B, T, I) with ``batch_first``, or unbatched (T, I).
      h0: (L*D, B, H) or (L*D, H); zeros when None.
      lengths: (B,) valid steps per sequence, as torch's packed sequences.
      resets: (T, B) booleans ((B, T) with ``batch_first``), True where an episode starts: the
        state entering that step is ``reset_state`` in every layer (see :func:`jaxgru.gru`).
      reset_state: (L*D, H) or (L*D, B, H), the state a reset puts in; zeros when None. A
        learned one is an ``nnx.Param`` of the model that holds this GRU, passed here.
      deterministic: overrides ``self.deterministic`` for this call.
      rngs: overrides the stored dropout stream for this call.
    """
    params, (x, h0, reset_state) = _policy.promote(self.state_dict(), {"x": x, "h0": h0, "reset_state": reset_state}, self.dtype)
    deterministic = _validate.check_flag(self.deterministic if deterministic is None else deterministic, "deterministic")
    dropout, key = _validate.check_dropout(self.dropout), None
    if dropout > 0 and not deterministic:
      stream = self.rngs if rngs is None else rngs
      if stream is None:
        raise ValueError("dropout > 0 in training mode needs rngs: pass rngs to the constructor or the call")
      key = stream if isinstance(stream, jax.Array) else _dropout_stream(stream)()
    dropout = dropout if key is not None else 0.0  # evaluation
    options = _policy.gru_options(self)
    return gru(
      params, x, h0, lengths=lengths, resets=resets, reset_state=reset_state, dropout=dropout, dropout_key=key, **options
    )

  def set_view(self, deterministic: bool | None = None) -> None:
    """Called by ``nnx.view(model, deterministic=...)``; set ``deterministic`` directly instead."""
    if deterministic is not None:
      self.deterministic = _validate.check_flag(deterministic, "deterministic")


class GRUCell(_TorchParams, nnx.RNNCellBase):
  """``torch.nn.GRUCell``'s parameters and maths behind Flax's recurrent-cell contract.

  ``cell(carry, x) -> (carry, y)`` with ``y == carry``; ``initialize_carry`` and
  ``num_feature_axes`` as Flax's cells, so it runs inside ``nnx.RNN`` and ``nnx.Bidirectional``.

  Argument order: Flax's cells take the state first, ``cell(h, x)``; torch's ``GRUCell`` and
  :func:`jaxgru.gru_cell` take the input first, ``cell(x, h)``. When ``input_size == hidden_size``
  the two orders have the same shapes and calling this cell in torch's order raises nothing
  and computes something else. Code ported from torch can call :meth:`forward`, which takes
  torch's order.

  Args:
    input_size: I, the features of each input.
    hidden_size: H, the features of the state.
    bias: whether the cell has ``bias_ih`` and ``bias_hh``.
    variant: ``"torch"`` or ``"classic"`` (see :func:`jaxgru.gru_step`).
    dtype: compute dtype; None promotes the input and the parameters.
    param_dtype: storage dtype of the parameters.
    carry_init: initialiser of :meth:`initialize_carry`'s state; zeros when None.
    rngs: ``params`` stream for initialisation (torch's U(-1/sqrt(H), 1/sqrt(H))).

  Example:
    >>> cell = jaxgru.GRUCell(3, 8, rngs=nnx.Rngs(0))
    >>> out = nnx.RNN(cell)(jnp.ones((2, 5, 3)))  # batch-major, like Flax
    >>> out.shape
    (2, 5, 8)
  """

  def __init__(
    self,
    input_size: int,
    hidden_size: int,
    bias: bool = True,
    *,
    variant: str = "torch",
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    carry_init: Any = None,
    rngs: nnx.Rngs,
  ):
    _policy.check_gru_args(input_size, hidden_size, 1, 0.0, variant, dtype, param_dtype, cell=True, bias=bias)
    self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bool(bias)
    self.variant, self.dtype, self.param_dtype = variant, dtype, param_dtype
    self.carry_init = carry_init
    self._set_params(init_gru_cell_params(rngs.params(), input_size, hidden_size, self.bias, param_dtype))

  def __call__(self, carry: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One step in Flax's order, state first: ``(h_new, h_new) = cell(h, x)``.

    Args:
      carry: h (..., H), the state.
      inputs: x (..., I), the step's input.

    Returns:
      The new state twice, ``(h_new, h_new)``, as carry and as output, in the carry's dtype.
    """
    h = _policy.run_cell(self.state_dict(), carry, inputs, self.dtype, self.variant)
    return h, h

  def forward(self, x: jax.Array, h: jax.Array | None = None) -> jax.Array:
    """One step in torch's order, input first: ``h_new = cell.forward(x, h)``, as ``torch.nn.GRUCell``.

    Args:
      x: (B, I) or unbatched (I,).
      h: (B, H) or (H,) like ``x``; zeros when None.

    Returns:
      The new state, (B, H) or (H,).

    Example:
      >>> cell = jaxgru.GRUCell(4, 4, rngs=nnx.Rngs(0))
      >>> x, h = jnp.ones((2, 4)), jnp.zeros((2, 4))
      >>> bool(jnp.allclose(cell.forward(x, h), cell(h, x)[0]))
      True
    """
    x = _validate.as_array(x, "x")
    h = jnp.zeros(x.shape[:-1] + (self.hidden_size,), x.dtype) if h is None else h
    return self(h, x)[0]

  def initialize_carry(
    self, input_shape: tuple[int, ...], rngs: nnx.Rngs | nnx.RngStream | None = None, carry_init: Any = None
  ) -> jax.Array:
    """The initial state for inputs of ``input_shape`` (..., I): zeros (..., H) by default."""
    shape = tuple(input_shape[:-1]) + (self.hidden_size,)
    init = carry_init or self.carry_init
    if init is None:
      return jnp.zeros(shape, self.param_dtype)
    if isinstance(rngs, nnx.Rngs):
      rngs = rngs.carry
    if rngs is None:
      raise ValueError("initialize_carry with a carry_init needs rngs")
    return init(rngs(), shape, self.param_dtype)

  @property
  def num_feature_axes(self) -> int:
    return 1
