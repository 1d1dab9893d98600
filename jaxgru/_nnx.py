"""Flax NNX modules: ``GRU``, ``LSTM``, ``RNN`` (torch's layers) and ``GRUCell``, ``LSTMCell``,
``RNNCell`` (Flax recurrent cells).

They own parameters (``nnx.Param`` named exactly like torch's), initialisation and dtype
policy; the maths is :func:`jaxgru.gru`, :func:`jaxgru.lstm`, :func:`jaxgru.rnn` and their cells.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgru import _policy, _validate
from jaxgru._core import gru
from jaxgru._lstm import _pair, lstm
from jaxgru._params import (
  as_params,
  check_layout,
  init_gru_cell_params,
  init_gru_params,
  init_lstm_cell_params,
  init_lstm_params,
  init_rnn_cell_params,
  init_rnn_params,
)
from jaxgru._rnn import rnn


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


_INIT = {"GRU": init_gru_params, "LSTM": init_lstm_params, "RNN": init_rnn_params}


class _Layer(_TorchParams):
  """What the GRU, LSTM and RNN modules share: torch's constructor arguments, dropout, the view."""

  def _init_layer(self, mode: str, args: Mapping[str, Any]) -> None:
    """Checks and keeps the constructor's ``args`` (its ``locals()``) and draws the parameters."""
    a = dict(args)
    flags = {k: a[k] for k in ("bias", "batch_first", "bidirectional", "remat", "deterministic")}
    proj_size, nonlinearity = a.get("proj_size", 0), a.get("nonlinearity", "tanh")
    self.dropout = _policy.check_gru_args(
      a["input_size"], a["hidden_size"], a["num_layers"], a["dropout"], a.get("variant", "torch"), a["dtype"],
      a["param_dtype"], a["impl"], mode=mode, proj_size=proj_size, nonlinearity=nonlinearity, **flags,
    )  # fmt: skip
    self.impl, self.remat = a["impl"], bool(a["remat"])
    self.input_size, self.hidden_size, self.num_layers = a["input_size"], a["hidden_size"], a["num_layers"]
    self.bias, self.batch_first, self.bidirectional = bool(a["bias"]), bool(a["batch_first"]), bool(a["bidirectional"])
    self.dtype, self.param_dtype = a["dtype"], a["param_dtype"]
    self.deterministic = bool(a["deterministic"])
    sizes = (a["input_size"], a["hidden_size"], a["num_layers"], self.bias, self.bidirectional)
    extra = {"proj_size": proj_size} if mode == "LSTM" else {}
    self._set_params(_INIT[mode](a["rngs"].params(), *sizes, **extra, dtype=a["param_dtype"]))
    stream = _dropout_stream(a["rngs"], required=self.dropout > 0)
    self.rngs = nnx.data(None) if stream is None else stream.fork()

  def _dropout_key(self, deterministic: Any, rngs: Any) -> tuple[float, jax.Array | None]:
    """The call's dropout rate and key: rate 0 and no key in evaluation."""
    deterministic = _validate.check_flag(self.deterministic if deterministic is None else deterministic, "deterministic")
    dropout, key = _validate.check_dropout(self.dropout), None
    if dropout > 0 and not deterministic:
      stream = self.rngs if rngs is None else rngs
      if stream is None:
        raise ValueError("dropout > 0 in training mode needs rngs: pass rngs to the constructor or the call")
      key = stream if isinstance(stream, jax.Array) else _dropout_stream(stream)()
    return (dropout if key is not None else 0.0), key

  def set_view(self, deterministic: bool | None = None) -> None:
    """Called by ``nnx.view(model, deterministic=...)``; set ``deterministic`` directly instead."""
    if deterministic is not None:
      self.deterministic = _validate.check_flag(deterministic, "deterministic")


class GRU(_Layer):
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
    self.variant = variant
    self._init_layer("GRU", locals())

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
    dropout, key = self._dropout_key(deterministic, rngs)
    options = _policy.gru_options(self)
    return gru(
      params, x, h0, lengths=lengths, resets=resets, reset_state=reset_state, dropout=dropout, dropout_key=key, **options
    )


class _Cell(_TorchParams, nnx.RNNCellBase):
  """What the cells share: Flax's carry contract over torch's parameters."""

  _parts: int = 1  # the carry: h, or an LSTM's (h, c)

  def _step(self) -> Any:
    raise NotImplementedError

  def __call__(self, carry: Any, inputs: jax.Array) -> tuple[Any, jax.Array]:
    """One step in Flax's order, state first: ``(new_carry, h_new) = cell(carry, x)``.

    Args:
      carry: h (..., H), or an LSTM's pair (h, c).
      inputs: x (..., I), the step's input.

    Returns:
      The new carry (its structure and dtypes kept) and the step's output h.
    """
    new = _policy.run_cell(self.state_dict(), carry, inputs, self.dtype, self._step())
    return new, (new[0] if isinstance(new, tuple) else new)

  def initialize_carry(
    self, input_shape: tuple[int, ...], rngs: nnx.Rngs | nnx.RngStream | None = None, carry_init: Any = None
  ) -> Any:
    """The initial carry for inputs of ``input_shape`` (..., I): zeros (..., H) by default (a pair for an LSTM)."""
    shape = tuple(input_shape[:-1]) + (self.hidden_size,)
    init = carry_init or self.carry_init
    if init is None:
      parts = tuple(jnp.zeros(shape, self.param_dtype) for _ in range(self._parts))
    else:
      if isinstance(rngs, nnx.Rngs):
        rngs = rngs.carry
      if rngs is None:
        raise ValueError("initialize_carry with a carry_init needs rngs")
      parts = tuple(init(rngs(), shape, self.param_dtype) for _ in range(self._parts))
    return parts if self._parts > 1 else parts[0]

  @property
  def num_feature_axes(self) -> int:
    return 1


class GRUCell(_Cell):
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

  def _step(self) -> Any:
    return _policy.cell_step("GRU", variant=self.variant)

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


class LSTM(_Layer):
  """``torch.nn.LSTM`` as a Flax NNX module, ``proj_size`` included.

  Example:
    >>> model = jaxgru.LSTM(3, 8, num_layers=2, bidirectional=True, proj_size=4, rngs=nnx.Rngs(0))
    >>> out, (h_n, c_n) = model(jnp.ones((5, 2, 3)))
    >>> out.shape, h_n.shape, c_n.shape
    ((5, 2, 8), (4, 2, 4), (4, 2, 8))

  Args:
    input_size: I, the features of each input step (torch's ``input_size``).
    hidden_size: H, the features of the cell state c (torch's ``hidden_size``).
    num_layers: stacked layers, each reading the previous one's output.
    bias: whether the layers have ``bias_ih`` and ``bias_hh``.
    batch_first: whether ``x`` and the output are (B, T, ...) rather than (T, B, ...).
    dropout: probability of zeroing each output of every layer but the last, in training.
    bidirectional: whether each layer also runs from the last step down.
    proj_size: P > 0 projects h to size P (``weight_hr``); 0 for none.
    impl: the implementation, as :func:`jaxgru.lstm`'s ``impl``.
    remat: rematerialisation in the backward pass, as :func:`jaxgru.lstm`'s ``remat``.
    dtype: compute dtype; None promotes the input and the parameters.
    param_dtype: storage dtype of the parameters.
    deterministic: disables dropout; ``model.eval()`` / ``model.train()`` set it.
    rngs: ``params`` stream for initialisation (torch's U(-1/sqrt(H), 1/sqrt(H))); a fork of
      the ``dropout`` stream (``default`` if absent) is kept for dropout.
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
    proj_size: int = 0,
    *,
    impl: str = "auto",
    remat: bool = False,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    deterministic: bool = False,
    rngs: nnx.Rngs,
  ):
    self.proj_size = proj_size
    self._init_layer("LSTM", locals())

  def __call__(
    self,
    x: jax.Array,
    hx: tuple[jax.Array, jax.Array] | None = None,
    *,
    lengths: jax.Array | None = None,
    resets: jax.Array | None = None,
    reset_state: tuple[jax.Array | None, jax.Array | None] | None = None,
    deterministic: bool | None = None,
    rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
  ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Runs the LSTM: ``(output, (h_n, c_n)) = model(x, (h0, c0))``, shapes as :func:`jaxgru.lstm`.

    Args:
      x: (T, B, I), (B, T, I) with ``batch_first``, or unbatched (T, I).
      hx: the pair (h0 (L*D, B, P), c0 (L*D, B, H)); zeros when None.
      lengths: (B,) valid steps per sequence, as torch's packed sequences.
      resets: (T, B) booleans ((B, T) with ``batch_first``), True where an episode starts.
      reset_state: the pair (h, c) a reset puts in; zeros when None.
      deterministic: overrides ``self.deterministic`` for this call.
      rngs: overrides the stored dropout stream for this call.
    """
    (h0, c0), (r_h, r_c) = _pair(hx, "hx", "(h0, c0)"), _pair(reset_state, "reset_state", "(h, c)")
    arrays = {"x": x, "hx[0] (h0)": h0, "hx[1] (c0)": c0, "reset_state[0] (h)": r_h, "reset_state[1] (c)": r_c}
    params, (x, h0, c0, r_h, r_c) = _policy.promote(self.state_dict(), arrays, self.dtype)
    dropout, key = self._dropout_key(deterministic, rngs)
    return lstm(
      params, x, (h0, c0), lengths=lengths, resets=resets, reset_state=(r_h, r_c), dropout=dropout, dropout_key=key,
      batch_first=self.batch_first, impl=self.impl, remat=self.remat,
    )  # fmt: skip


class RNN(_Layer):
  """``torch.nn.RNN`` (Elman, tanh or ReLU) as a Flax NNX module.

  Example:
    >>> model = jaxgru.RNN(3, 8, num_layers=2, nonlinearity="relu", rngs=nnx.Rngs(0))
    >>> out, h_n = model(jnp.ones((5, 2, 3)))
    >>> out.shape, h_n.shape
    ((5, 2, 8), (2, 2, 8))

  Args:
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
    deterministic: disables dropout; ``model.eval()`` / ``model.train()`` set it.
    rngs: ``params`` stream for initialisation; a fork of the ``dropout`` stream is kept for dropout.
  """

  def __init__(
    self,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    nonlinearity: str = "tanh",
    bias: bool = True,
    batch_first: bool = False,
    dropout: float = 0.0,
    bidirectional: bool = False,
    *,
    impl: str = "auto",
    remat: bool = False,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    deterministic: bool = False,
    rngs: nnx.Rngs,
  ):
    self.nonlinearity = nonlinearity
    self._init_layer("RNN", locals())

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
    """Runs the RNN: ``(output, h_n) = model(x, h0)``, shapes as :func:`jaxgru.rnn`.

    Args:
      x: (T, B, I), (B, T, I) with ``batch_first``, or unbatched (T, I).
      h0: (L*D, B, H) or (L*D, H); zeros when None.
      lengths: (B,) valid steps per sequence, as torch's packed sequences.
      resets: (T, B) booleans ((B, T) with ``batch_first``), True where an episode starts.
      reset_state: (L*D, H) or (L*D, B, H), the state a reset puts in; zeros when None.
      deterministic: overrides ``self.deterministic`` for this call.
      rngs: overrides the stored dropout stream for this call.
    """
    params, (x, h0, reset_state) = _policy.promote(self.state_dict(), {"x": x, "h0": h0, "reset_state": reset_state}, self.dtype)
    dropout, key = self._dropout_key(deterministic, rngs)
    return rnn(
      params, x, h0, nonlinearity=self.nonlinearity, lengths=lengths, resets=resets, reset_state=reset_state,
      dropout=dropout, dropout_key=key, batch_first=self.batch_first, impl=self.impl, remat=self.remat,
    )  # fmt: skip


class LSTMCell(_Cell):
  """``torch.nn.LSTMCell``'s parameters and maths behind Flax's recurrent-cell contract.

  ``cell((h, c), x) -> ((h', c'), h')``: the carry is torch's pair (h, c) (Flax's own
  ``LSTMCell`` keeps (c, h)); ``initialize_carry`` and ``num_feature_axes`` as Flax's cells, so it
  runs inside ``nnx.RNN`` and ``nnx.Bidirectional``. :meth:`forward` takes torch's order.

  Args:
    input_size: I, the features of each input.
    hidden_size: H, the features of h and c.
    bias: whether the cell has ``bias_ih`` and ``bias_hh``.
    dtype: compute dtype; None promotes the input and the parameters.
    param_dtype: storage dtype of the parameters.
    carry_init: initialiser of :meth:`initialize_carry`'s h and c; zeros when None.
    rngs: ``params`` stream for initialisation (torch's U(-1/sqrt(H), 1/sqrt(H))).

  Example:
    >>> cell = jaxgru.LSTMCell(3, 8, rngs=nnx.Rngs(0))
    >>> nnx.RNN(cell)(jnp.ones((2, 5, 3))).shape  # batch-major, like Flax
    (2, 5, 8)
  """

  _parts = 2

  def __init__(
    self,
    input_size: int,
    hidden_size: int,
    bias: bool = True,
    *,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    carry_init: Any = None,
    rngs: nnx.Rngs,
  ):
    _policy.check_gru_args(input_size, hidden_size, 1, 0.0, "torch", dtype, param_dtype, cell=True, mode="LSTM", bias=bias)
    self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bool(bias)
    self.dtype, self.param_dtype, self.carry_init = dtype, param_dtype, carry_init
    self._set_params(init_lstm_cell_params(rngs.params(), input_size, hidden_size, self.bias, param_dtype))

  def _step(self) -> Any:
    return _policy.cell_step("LSTM")

  def forward(self, x: jax.Array, hx: tuple[jax.Array, jax.Array] | None = None) -> tuple[jax.Array, jax.Array]:
    """One step in torch's order, input first: ``(h', c') = cell.forward(x, (h, c))``, as ``torch.nn.LSTMCell``.

    Args:
      x: (B, I) or unbatched (I,).
      hx: the pair (h, c), each (B, H) or (H,) like ``x``; zeros when None.

    Returns:
      The pair (h', c').
    """
    x = _validate.as_array(x, "x")
    zeros = jnp.zeros(x.shape[:-1] + (self.hidden_size,), x.dtype)
    h, c = (zeros if s is None else s for s in _pair(hx, "hx", "(h, c)"))
    return self((h, c), x)[0]


class RNNCell(_Cell):
  """``torch.nn.RNNCell``'s parameters and maths behind Flax's recurrent-cell contract.

  ``cell(h, x) -> (h', h')``, as :class:`GRUCell`; :meth:`forward` takes torch's order.

  Args:
    input_size: I, the features of each input.
    hidden_size: H, the features of the state.
    bias: whether the cell has ``bias_ih`` and ``bias_hh``.
    nonlinearity: ``"tanh"`` or ``"relu"``, as torch's.
    dtype: compute dtype; None promotes the input and the parameters.
    param_dtype: storage dtype of the parameters.
    carry_init: initialiser of :meth:`initialize_carry`'s state; zeros when None.
    rngs: ``params`` stream for initialisation (torch's U(-1/sqrt(H), 1/sqrt(H))).

  Example:
    >>> cell = jaxgru.RNNCell(3, 8, nonlinearity="relu", rngs=nnx.Rngs(0))
    >>> nnx.RNN(cell)(jnp.ones((2, 5, 3))).shape
    (2, 5, 8)
  """

  def __init__(
    self,
    input_size: int,
    hidden_size: int,
    bias: bool = True,
    nonlinearity: str = "tanh",
    *,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    carry_init: Any = None,
    rngs: nnx.Rngs,
  ):
    _policy.check_gru_args(
      input_size, hidden_size, 1, 0.0, "torch", dtype, param_dtype, cell=True, mode="RNN", nonlinearity=nonlinearity, bias=bias
    )
    self.input_size, self.hidden_size, self.bias, self.nonlinearity = input_size, hidden_size, bool(bias), nonlinearity
    self.dtype, self.param_dtype, self.carry_init = dtype, param_dtype, carry_init
    self._set_params(init_rnn_cell_params(rngs.params(), input_size, hidden_size, self.bias, param_dtype))

  def _step(self) -> Any:
    return _policy.cell_step("RNN", nonlinearity=self.nonlinearity)

  def forward(self, x: jax.Array, h: jax.Array | None = None) -> jax.Array:
    """One step in torch's order, input first: ``h' = cell.forward(x, h)``, as ``torch.nn.RNNCell``.

    Args:
      x: (B, I) or unbatched (I,).
      h: (B, H) or (H,) like ``x``; zeros when None.

    Returns:
      The new state.
    """
    x = _validate.as_array(x, "x")
    h = jnp.zeros(x.shape[:-1] + (self.hidden_size,), x.dtype) if h is None else h
    return self(h, x)[0]
