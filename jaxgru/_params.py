"""torch's recurrent parameter layout: key names, shapes, validation and initialisation.

A GRU's, LSTM's or RNN's parameters are a flat mapping with exactly the keys and shapes of
torch's ``nn.GRU(...).state_dict()`` (``nn.LSTM``, ``nn.RNN``); a cell's those of ``nn.GRUCell``
(``nn.LSTMCell``, ``nn.RNNCell``). The gates are stacked along the first axis in torch's order:
(r, z, n) for the GRU, (i, f, g, o) for the LSTM, one block for the RNN.

Axis legend: I input size, H hidden size, P projection size, G gate blocks, L layers, D directions.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxgru._coerce import check_flag, to_array

Params = Mapping[str, jax.Array]

_KEY = re.compile(r"^(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?$")
CELL_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
MODES = ("GRU", "LSTM", "RNN")
GATES = {"GRU": 3, "LSTM": 4, "RNN": 1}  # gate blocks stacked along the weights' first axis


@dataclasses.dataclass(frozen=True)
class RecurrentSpec:
  """The configuration a GRU, LSTM or RNN parameter mapping describes, as :func:`gru_spec`,
  :func:`lstm_spec` and :func:`rnn_spec` read it from the keys and shapes (torch's arguments
  of the same names). ``GRUSpec`` is the same class.

  Example:
    >>> spec = jaxgru.gru_spec(jaxgru.init_gru_params(jax.random.key(0), 3, 8, num_layers=2, bidirectional=True))
    >>> spec.num_layers, spec.num_directions, spec.hidden_size
    (2, 2, 8)
  """

  input_size: int
  """I, the features of each input step (layer 0's ``weight_ih`` is (G*H, I))."""
  hidden_size: int
  """H, the features of the state (an LSTM's cell state c)."""
  num_layers: int
  """How many layers (``_l0`` ... ``_l{L-1}``)."""
  bias: bool
  """Whether the keys hold ``bias_ih`` and ``bias_hh``."""
  bidirectional: bool
  """Whether each layer has ``_reverse`` twins."""
  dtype: Any
  """The parameters' dtype (all share it)."""
  mode: str = "GRU"
  """Which torch layer the keys describe, ``"GRU"``, ``"LSTM"`` or ``"RNN"``."""
  proj_size: int = 0
  """P, an LSTM's projection size (``weight_hr``, (P, H)); 0 without projection."""

  @property
  def num_directions(self) -> int:
    """D, the number of directions (2 when bidirectional, else 1)."""
    return 2 if self.bidirectional else 1

  @property
  def output_size(self) -> int:
    """The features of h and of each direction's output, P when projecting and H otherwise."""
    return self.proj_size or self.hidden_size


GRUSpec = RecurrentSpec


def layer_key(kind: str, layer: int, direction: int) -> str:
  """``layer_key("weight_ih", 1, 1) == "weight_ih_l1_reverse"``."""
  return f"{kind}_l{layer}" + ("_reverse" if direction else "")


def _check_mode(mode: Any) -> str:
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  return mode


def check_proj_size(proj_size: Any, hidden_size: int, mode: str) -> int:
  """torch's checks of ``proj_size``: an int, >= 0, below ``hidden_size``, an LSTM's only."""
  if isinstance(proj_size, bool) or not isinstance(proj_size, int):
    raise ValueError(f"proj_size must be an int, got {proj_size!r}")
  if proj_size < 0:
    raise ValueError(f"proj_size should be a positive integer or zero to disable projections, got {proj_size}")
  if proj_size and mode != "LSTM":
    raise ValueError(f"proj_size argument is only supported for LSTM, not RNN or GRU (got proj_size={proj_size})")
  if proj_size and proj_size >= hidden_size:
    raise ValueError(f"proj_size has to be smaller than hidden_size, got proj_size={proj_size} and hidden_size={hidden_size}")
  return proj_size


def expected_shapes(
  input_size: int,
  hidden_size: int,
  num_layers: int,
  bias: bool,
  bidirectional: bool,
  *,
  mode: str = "GRU",
  proj_size: int = 0,
) -> dict[str, tuple[int, ...]]:
  """Every key of torch's ``GRU``, ``LSTM`` or ``RNN`` ``state_dict()`` with its shape, in torch's order.

  Args:
    input_size: the features of each input step, I.
    hidden_size: the features of the state, H.
    num_layers: the number of stacked layers, L.
    bias: whether the biases are included.
    bidirectional: whether the ``_reverse`` keys are included.
    mode: ``"GRU"`` (3 gate blocks), ``"LSTM"`` (4) or ``"RNN"`` (1).
    proj_size: an LSTM's projection size P (``weight_hr``); 0 for none.

  Returns:
    ``{key: shape}``, as ``{k: tuple(v.shape) for k, v in torch.nn.GRU(...).state_dict().items()}``.

  Raises:
    TypeError: ``bias`` or ``bidirectional`` is not a bool.
    ValueError: ``mode`` is unknown, or ``proj_size`` is one torch refuses.

  Example:
    >>> jaxgru.expected_shapes(3, 4, 1, True, False)
    {'weight_ih_l0': (12, 3), 'weight_hh_l0': (12, 4), 'bias_ih_l0': (12,), 'bias_hh_l0': (12,)}
    >>> jaxgru.expected_shapes(3, 4, 1, False, False, mode="LSTM", proj_size=2)
    {'weight_ih_l0': (16, 3), 'weight_hh_l0': (16, 2), 'weight_hr_l0': (2, 4)}
  """
  bias, bidirectional = check_flag(bias, "bias"), check_flag(bidirectional, "bidirectional")
  gates, num_directions = GATES[_check_mode(mode)] * hidden_size, 2 if bidirectional else 1
  out = check_proj_size(proj_size, hidden_size, mode) or hidden_size
  shapes: dict[str, tuple[int, ...]] = {}
  for layer in range(num_layers):
    layer_in = input_size if layer == 0 else out * num_directions
    for direction in range(num_directions):
      shapes[layer_key("weight_ih", layer, direction)] = (gates, layer_in)
      shapes[layer_key("weight_hh", layer, direction)] = (gates, out)
      if bias:
        shapes[layer_key("bias_ih", layer, direction)] = (gates,)
        shapes[layer_key("bias_hh", layer, direction)] = (gates,)
      if proj_size:
        shapes[layer_key("weight_hr", layer, direction)] = (proj_size, hidden_size)
  return shapes


def cell_shapes(input_size: int, hidden_size: int, bias: bool, mode: str = "GRU") -> dict[str, tuple[int, ...]]:
  """Every key of torch's ``GRUCell``, ``LSTMCell`` or ``RNNCell`` ``state_dict()`` with its shape."""
  bias = check_flag(bias, "bias")
  gates = GATES[_check_mode(mode)] * hidden_size
  shapes = {"weight_ih": (gates, input_size), "weight_hh": (gates, hidden_size)}
  if bias:
    shapes |= {"bias_ih": (gates,), "bias_hh": (gates,)}
  return shapes


def _shape_of(value: Any, key: str) -> tuple[int, ...]:
  shape = getattr(value, "shape", None)
  if shape is None or not hasattr(value, "dtype"):
    raise TypeError(f"params[{key!r}] must be an array, got {type(value).__name__}")
  return tuple(shape)


def check_layout(params: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], what: str) -> None:
  """Raises one ValueError listing missing keys, unexpected keys and wrong shapes, like torch's
  strict ``load_state_dict``."""
  _check_mapping(params)
  missing = [k for k in shapes if k not in params]
  unexpected = [k for k in params if k not in shapes]
  wrong = [
    f"{k}: got shape {_shape_of(params[k], k)}, expected {shapes[k]}"
    for k in shapes
    if k in params and _shape_of(params[k], k) != shapes[k]
  ]
  if missing or unexpected or wrong:
    lines = [f"params do not describe a {what}:"]
    if missing:
      lines.append("  missing key(s): " + ", ".join(missing))
    if unexpected:
      lines.append("  unexpected key(s): " + ", ".join(map(repr, unexpected)))
    if wrong:
      lines.append("  size mismatch for " + "; ".join(wrong))
    raise ValueError("\n".join(lines))


def _check_dtypes(params: Mapping[str, Any]) -> Any:
  dtypes = {k: jnp.dtype(v.dtype) for k, v in params.items()}
  floating = {k: d for k, d in dtypes.items() if not jnp.issubdtype(d, jnp.floating)}
  if floating:
    raise TypeError(f"params must be floating-point arrays; got {floating}")
  if len(set(dtypes.values())) > 1:
    detail = ", ".join(f"{k}: {d}" for k, d in dtypes.items())
    raise TypeError(f"params must all have one dtype (as torch requires); got {detail}")
  return next(iter(dtypes.values()))


def _check_mapping(params: Any) -> None:
  if not isinstance(params, Mapping):
    raise TypeError(f"params must be a mapping of torch state-dict keys to arrays, got {type(params).__name__}")
  bad = [k for k in params if not isinstance(k, str)]
  if bad:
    raise TypeError(f"params keys must be strings, got {bad!r}")


def as_params(params: Any) -> dict[str, jax.Array]:
  """``params`` with every value a JAX array: NumPy arrays, JAX arrays and tensors of other
  libraries (a torch ``state_dict()``, read through DLPack without importing torch)."""
  _check_mapping(params)
  arrays = {}
  for key, value in params.items():
    _shape_of(value, key)
    arrays[key] = to_array(value, f"params[{key!r}]")
  return arrays


def read_spec(params: Any, mode: str = "GRU") -> RecurrentSpec:
  """Reads a ``mode`` layer's configuration from its torch-layout params, checking every key and shape."""
  _check_mapping(params)
  what, gates = f"torch.nn.{mode}", GATES[_check_mode(mode)]
  layers = [int(m.group(3)) for m in map(_KEY.match, params) if m]
  if not layers:
    raise ValueError(
      f"params do not describe a {mode}: no key of the form weight_ih_l0 ({what}'s layout); got keys {sorted(params)}"
    )
  for key in ("weight_ih_l0", "weight_hh_l0"):
    if key not in params:
      raise ValueError(f"params do not describe a {mode}: missing key(s): {key}")
  w_ih, w_hh = _shape_of(params["weight_ih_l0"], "weight_ih_l0"), _shape_of(params["weight_hh_l0"], "weight_hh_l0")
  proj_size = 0
  if mode == "LSTM" and "weight_hr_l0" in params:
    w_hr = _shape_of(params["weight_hr_l0"], "weight_hr_l0")
    if len(w_hr) != 2:
      raise ValueError(f"params['weight_hr_l0'] must have shape (proj_size, hidden_size), got {w_hr}")
    proj_size = w_hr[0]
  out = f"{'proj_size' if proj_size else 'hidden_size'}"
  if len(w_hh) != 2 or w_hh[0] % gates or w_hh[1] != (proj_size or w_hh[0] // gates):
    raise ValueError(
      f"params do not describe a {what}: params['weight_hh_l0'] must have shape ({gates} * hidden_size, {out}), got {w_hh}"
    )
  if len(w_ih) != 2:
    raise ValueError(
      f"params do not describe a {what}: params['weight_ih_l0'] must have shape ({gates} * hidden_size, input_size), got {w_ih}"
    )
  hidden = w_hh[0] // gates
  for name, size, key in (("hidden_size", hidden, "weight_hh_l0"), ("input_size", w_ih[1], "weight_ih_l0")):
    if size < 1:  # torch rejects both at construction
      raise ValueError(f"params['{key}'] has shape {params[key].shape}: {name} 0, but a {what} needs {name} >= 1")
  if proj_size:
    try:
      check_proj_size(proj_size, hidden, mode)
    except ValueError as err:
      raise ValueError(f"params['weight_hr_l0'] has shape {w_hr}: {err}") from None
  bias = any(k.startswith("bias_") for k in params)
  bidirectional = any(k.endswith("_reverse") for k in params)
  spec_shapes = expected_shapes(w_ih[1], hidden, max(layers) + 1, bias, bidirectional, mode=mode, proj_size=proj_size)
  check_layout(params, spec_shapes, what)
  dtype = _check_dtypes(params)
  return RecurrentSpec(w_ih[1], hidden, max(layers) + 1, bias, bidirectional, dtype, mode, proj_size)


def gru_spec(params: Any) -> RecurrentSpec:
  """Reads a GRU's configuration from its torch-layout params, checking every key and shape.

  The number of layers, the directions and whether there is a bias are read from the keys;
  the sizes from ``weight_ih_l0`` and ``weight_hh_l0``.

  Args:
    params: torch-layout params (JAX or NumPy arrays, or torch tensors).

  Returns:
    The :class:`RecurrentSpec`, mode ``"GRU"``.

  Raises:
    TypeError: ``params`` is not a mapping of floating arrays of one dtype.
    ValueError: keys are missing or unexpected, or shapes are wrong; all are listed at once.

  Example:
    >>> jaxgru.gru_spec(jaxgru.init_gru_params(jax.random.key(0), 3, 4, num_layers=2)).num_layers
    2
  """
  return read_spec(params, "GRU")


def lstm_spec(params: Any) -> RecurrentSpec:
  """Reads an LSTM's configuration from its torch-layout params, checking every key and shape.

  As :func:`gru_spec`; the projection size is read from ``weight_hr_l0`` (P, H) when present.

  Args:
    params: torch-layout params of ``torch.nn.LSTM`` (JAX or NumPy arrays, or torch tensors).

  Returns:
    The :class:`RecurrentSpec`, mode ``"LSTM"``.

  Raises:
    TypeError: ``params`` is not a mapping of floating arrays of one dtype.
    ValueError: keys are missing or unexpected, or shapes are wrong; all are listed at once.

  Example:
    >>> spec = jaxgru.lstm_spec(jaxgru.init_lstm_params(jax.random.key(0), 3, 8, proj_size=4))
    >>> spec.hidden_size, spec.proj_size, spec.output_size
    (8, 4, 4)
  """
  return read_spec(params, "LSTM")


def rnn_spec(params: Any) -> RecurrentSpec:
  """Reads an Elman RNN's configuration from its torch-layout params, checking every key and shape.

  The nonlinearity is not in the params (nor in torch's state dict): it is an argument of
  :func:`jaxgru.rnn`.

  Args:
    params: torch-layout params of ``torch.nn.RNN`` (JAX or NumPy arrays, or torch tensors).

  Returns:
    The :class:`RecurrentSpec`, mode ``"RNN"``.

  Raises:
    TypeError: ``params`` is not a mapping of floating arrays of one dtype.
    ValueError: keys are missing or unexpected, or shapes are wrong; all are listed at once.

  Example:
    >>> jaxgru.rnn_spec(jaxgru.init_rnn_params(jax.random.key(0), 3, 4, bidirectional=True)).num_directions
    2
  """
  return read_spec(params, "RNN")


def cell_spec(params: Any, mode: str = "GRU") -> RecurrentSpec:
  """Like :func:`gru_spec`, for ``torch.nn.GRUCell`` (``LSTMCell``, ``RNNCell``) keys (``weight_ih``, ..., ``bias_hh``)."""
  _check_mapping(params)
  what, gates = f"torch.nn.{mode}Cell", GATES[_check_mode(mode)]
  for key in ("weight_ih", "weight_hh"):
    if key not in params:
      raise ValueError(f"params do not describe a {what}: missing key(s): {key}; got keys {sorted(params)}")
  w_ih, w_hh = _shape_of(params["weight_ih"], "weight_ih"), _shape_of(params["weight_hh"], "weight_hh")
  if len(w_hh) != 2 or w_hh[0] != gates * w_hh[1]:  # hidden_size 0 is valid: torch's cells of size 0 give (B, 0)
    raise ValueError(
      f"params do not describe a {what}: params['weight_hh'] must have shape ({gates} * hidden_size, hidden_size), got {w_hh}"
    )
  if len(w_ih) != 2:
    raise ValueError(
      f"params do not describe a {what}: params['weight_ih'] must have shape ({gates} * hidden_size, input_size), got {w_ih}"
    )
  bias = "bias_ih" in params or "bias_hh" in params
  check_layout(params, cell_shapes(w_ih[1], w_hh[1], bias, mode), what)
  return RecurrentSpec(w_ih[1], w_hh[1], 1, bias, False, _check_dtypes(params), mode)


def check_sizes(minimum: int = 1, **sizes: Any) -> None:
  """Raises unless every size is a Python int >= ``minimum``: 1 for a GRU (torch rejects
  ``nn.GRU(3, 0)``), 0 for a cell (torch's ``nn.GRUCell(3, 0)`` returns (B, 0))."""
  for name, value in sizes.items():
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
      raise ValueError(f"{name} must be {'a positive' if minimum == 1 else 'a non-negative'} int, got {value!r}")


def _uniform_init(key: jax.Array, shapes: Mapping[str, tuple[int, ...]], hidden_size: int, dtype: Any) -> dict[str, jax.Array]:
  bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0  # torch's reset_parameters
  keys = jax.random.split(key, len(shapes))
  return {
    name: jax.random.uniform(k, shape, dtype, minval=-bound, maxval=bound)
    for k, (name, shape) in zip(keys, shapes.items(), strict=True)
  }


def init_gru_params(
  key: jax.Array,
  input_size: int,
  hidden_size: int,
  num_layers: int = 1,
  bias: bool = True,
  bidirectional: bool = False,
  dtype: Any = jnp.float32,
) -> dict[str, jax.Array]:
  """torch's initialisation of ``nn.GRU``: every parameter drawn from U(-1/sqrt(H), 1/sqrt(H)).

  Args:
    key: PRNG key.
    input_size: I, the features of each input step.
    hidden_size: H, the features of the state.
    num_layers: stacked layers.
    bias: whether to include ``bias_ih`` and ``bias_hh``.
    bidirectional: whether each layer has ``_reverse`` twins.
    dtype: a floating-point dtype for every parameter.

  Returns:
    The params, torch's ``GRU.state_dict()`` keys and shapes (:func:`expected_shapes`).

  Raises:
    ValueError: a size is not a positive integer (``num_layers`` included).
    TypeError: ``dtype`` is not a floating-point dtype, or a flag is not a bool.

  Example:
    >>> params = jaxgru.init_gru_params(jax.random.key(0), input_size=3, hidden_size=4, num_layers=2)
    >>> params["weight_ih_l1"].shape
    (12, 4)
  """
  check_sizes(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
  _check_float_dtype(dtype)
  shapes = expected_shapes(input_size, hidden_size, num_layers, bias, bidirectional)
  return _uniform_init(key, shapes, hidden_size, dtype)


def init_gru_cell_params(
  key: jax.Array, input_size: int, hidden_size: int, bias: bool = True, dtype: Any = jnp.float32
) -> dict[str, jax.Array]:
  """torch's initialisation of ``nn.GRUCell``: U(-1/sqrt(H), 1/sqrt(H)) for every parameter.

  Args:
    key: PRNG key.
    input_size: I, the features of each input.
    hidden_size: H, the features of the state.
    bias: whether to include ``bias_ih`` and ``bias_hh``.
    dtype: a floating-point dtype for every parameter.

  Returns:
    The params ``weight_ih`` (3H, I), ``weight_hh`` (3H, H) and, with ``bias``, ``bias_ih`` and
    ``bias_hh`` (3H,), for :func:`gru_cell` or :class:`GRUCell`'s ``load_state_dict``.

  Raises:
    ValueError: a size is negative or not an integer.
    TypeError: ``dtype`` is not a floating-point dtype.

  Example:
    >>> params = jaxgru.init_gru_cell_params(jax.random.key(0), 3, 4)
    >>> sorted((k, v.shape) for k, v in params.items())
    [('bias_hh', (12,)), ('bias_ih', (12,)), ('weight_hh', (12, 4)), ('weight_ih', (12, 3))]
  """
  check_sizes(0, input_size=input_size, hidden_size=hidden_size)
  _check_float_dtype(dtype)
  return _uniform_init(key, cell_shapes(input_size, hidden_size, bias), hidden_size, dtype)


def init_lstm_params(
  key: jax.Array,
  input_size: int,
  hidden_size: int,
  num_layers: int = 1,
  bias: bool = True,
  bidirectional: bool = False,
  proj_size: int = 0,
  dtype: Any = jnp.float32,
) -> dict[str, jax.Array]:
  """torch's initialisation of ``nn.LSTM``: every parameter drawn from U(-1/sqrt(H), 1/sqrt(H)).

  Args:
    key: PRNG key.
    input_size: I, the features of each input step.
    hidden_size: H, the features of the cell state c (and of h without projection).
    num_layers: stacked layers.
    bias: whether to include ``bias_ih`` and ``bias_hh``.
    bidirectional: whether each layer has ``_reverse`` twins.
    proj_size: P > 0 adds ``weight_hr`` (P, H) to each layer and direction: h = W_hr (o tanh c)
      is of size P; 0 for none. torch's bounds: 0 <= P < H.
    dtype: a floating-point dtype for every parameter.

  Returns:
    The params, torch's ``LSTM.state_dict()`` keys and shapes (:func:`expected_shapes`).

  Raises:
    ValueError: a size is not a positive integer, or ``proj_size`` is one torch refuses.
    TypeError: ``dtype`` is not a floating-point dtype, or a flag is not a bool.

  Example:
    >>> params = jaxgru.init_lstm_params(jax.random.key(0), 3, 8, num_layers=2, proj_size=4)
    >>> params["weight_ih_l1"].shape, params["weight_hh_l1"].shape, params["weight_hr_l1"].shape
    ((32, 4), (32, 4), (4, 8))
  """
  check_sizes(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
  _check_float_dtype(dtype)
  shapes = expected_shapes(input_size, hidden_size, num_layers, bias, bidirectional, mode="LSTM", proj_size=proj_size)
  return _uniform_init(key, shapes, hidden_size, dtype)


def init_rnn_params(
  key: jax.Array,
  input_size: int,
  hidden_size: int,
  num_layers: int = 1,
  bias: bool = True,
  bidirectional: bool = False,
  dtype: Any = jnp.float32,
) -> dict[str, jax.Array]:
  """torch's initialisation of ``nn.RNN``: every parameter drawn from U(-1/sqrt(H), 1/sqrt(H)).

  Args:
    key: PRNG key.
    input_size: I, the features of each input step.
    hidden_size: H, the features of the state.
    num_layers: stacked layers.
    bias: whether to include ``bias_ih`` and ``bias_hh``.
    bidirectional: whether each layer has ``_reverse`` twins.
    dtype: a floating-point dtype for every parameter.

  Returns:
    The params, torch's ``RNN.state_dict()`` keys and shapes; the nonlinearity is not a parameter.

  Raises:
    ValueError: a size is not a positive integer (``num_layers`` included).
    TypeError: ``dtype`` is not a floating-point dtype, or a flag is not a bool.

  Example:
    >>> jaxgru.init_rnn_params(jax.random.key(0), 3, 4)["weight_hh_l0"].shape
    (4, 4)
  """
  check_sizes(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
  _check_float_dtype(dtype)
  return _uniform_init(
    key, expected_shapes(input_size, hidden_size, num_layers, bias, bidirectional, mode="RNN"), hidden_size, dtype
  )


def init_lstm_cell_params(
  key: jax.Array, input_size: int, hidden_size: int, bias: bool = True, dtype: Any = jnp.float32
) -> dict[str, jax.Array]:
  """torch's initialisation of ``nn.LSTMCell``: U(-1/sqrt(H), 1/sqrt(H)) for every parameter.

  Args:
    key: PRNG key.
    input_size: I, the features of each input.
    hidden_size: H, the features of h and c.
    bias: whether to include ``bias_ih`` and ``bias_hh``.
    dtype: a floating-point dtype for every parameter.

  Returns:
    ``weight_ih`` (4H, I), ``weight_hh`` (4H, H) and, with ``bias``, ``bias_ih``, ``bias_hh`` (4H,).

  Raises:
    ValueError: a size is negative or not an integer.
    TypeError: ``dtype`` is not a floating-point dtype.

  Example:
    >>> jaxgru.init_lstm_cell_params(jax.random.key(0), 3, 4)["weight_hh"].shape
    (16, 4)
  """
  check_sizes(0, input_size=input_size, hidden_size=hidden_size)
  _check_float_dtype(dtype)
  return _uniform_init(key, cell_shapes(input_size, hidden_size, bias, "LSTM"), hidden_size, dtype)


def init_rnn_cell_params(
  key: jax.Array, input_size: int, hidden_size: int, bias: bool = True, dtype: Any = jnp.float32
) -> dict[str, jax.Array]:
  """torch's initialisation of ``nn.RNNCell``: U(-1/sqrt(H), 1/sqrt(H)) for every parameter.

  Args:
    key: PRNG key.
    input_size: I, the features of each input.
    hidden_size: H, the features of the state.
    bias: whether to include ``bias_ih`` and ``bias_hh``.
    dtype: a floating-point dtype for every parameter.

  Returns:
    ``weight_ih`` (H, I), ``weight_hh`` (H, H) and, with ``bias``, ``bias_ih``, ``bias_hh`` (H,).

  Raises:
    ValueError: a size is negative or not an integer.
    TypeError: ``dtype`` is not a floating-point dtype.

  Example:
    >>> jaxgru.init_rnn_cell_params(jax.random.key(0), 3, 4)["weight_ih"].shape
    (4, 3)
  """
  check_sizes(0, input_size=input_size, hidden_size=hidden_size)
  _check_float_dtype(dtype)
  return _uniform_init(key, cell_shapes(input_size, hidden_size, bias, "RNN"), hidden_size, dtype)


def _check_float_dtype(dtype: Any) -> None:
  if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
    raise TypeError(f"dtype must be a floating-point dtype, got {dtype!r}")
