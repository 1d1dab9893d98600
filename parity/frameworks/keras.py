r"""Weights between ``jaxgru`` and Keras 3's ``keras.layers.GRU``, ``LSTM`` and ``SimpleRNN`` (alone,
stacked, ``Bidirectional``).

Keras's ``LSTM`` orders its gates (i, f, c, o) as torch does (i, f, g, o) and its ``SimpleRNN``
has one gate; each keeps ``kernel`` (I, G*U) and ``recurrent_kernel`` (U, G*U) transposed
against torch, and **one** ``bias`` (G*U,) where torch has two. Into ``jaxgru`` that bias goes to
``bias_ih`` and ``bias_hh`` is zero: exact, every bit kept. Out of ``jaxgru`` ``bias_ih +
bias_hh`` is folded into it (rounded once: the same forward, but training then differs, as for the
GRU's ``reset_after=False`` below). A ``SimpleRNN``'s ``activation`` is the RNN's
``nonlinearity`` (``"tanh"`` or ``"relu"``); an LSTM with ``proj_size`` has no Keras layer and is
refused. The GRU:

Keras's GRU orders its gates (z, r, h), keeps ``kernel`` (I, 3U) and ``recurrent_kernel``
(U, 3U) transposed against torch, and mixes the state as :math:`h' = z \odot h + (1 - z) \odot \tilde h`:

- ``reset_after=True`` (Keras's default) is torch's GRU, ``variant="torch"``: ``bias`` (2, 3U)
  holds the input and the recurrent bias, :math:`\tilde h = \tanh(W_h x + b_{ih} + r \odot (U_h h + b_{hh}))`.
  Both directions are exact, every bias kept apart.
- ``reset_after=False`` is the "reset before" GRU, ``variant="classic"``,
  :math:`\tilde h = \tanh(W_h x + b_h + U_h (r \odot h))`, with one ``bias`` (3U,). ``jaxgru``'s
  classic GRU keeps ``(1 - z) * h``, so Keras's z is ``jaxgru``'s with its pre-activation
  negated (:math:`1 - \sigma(a) = \sigma(-a)`): z's weights and bias change sign on the way.
  Keras has one bias per gate where ``jaxgru`` has two: into ``jaxgru`` it goes to ``bias_ih``
  (``bias_hh`` zero); out of it ``bias_ih + bias_hh`` is folded into one (rounded once; the
  same forward function, but training then differs: see :mod:`parity.frameworks.other_jax`).

A torch GRU layer is one ``keras.layers.GRU`` (one direction) or a
``keras.layers.Bidirectional`` of two (``merge_mode="concat"``: the directions side by side,
as torch), and ``num_layers`` is a list of them, or a ``keras.Sequential`` holding them.
Keras's ``dropout`` and ``recurrent_dropout`` (variational masks, one per sequence, on the
inputs and the state) have no torch twin, and torch's dropout between layers no Keras GRU
argument: they are refused, and not carried over. So are activations other than (sigmoid,
tanh), ``stateful`` layers, and other ``merge_mode``\ s.

Masking: a Keras ``mask`` (B, T) that is True on each sequence's first ``length`` steps is
``jaxgru``'s ``lengths``. The final states then agree; a lone Keras GRU (without
``zero_output_for_mask=True``, which :func:`to_keras` sets) repeats its last output over the
padding where ``jaxgru`` and torch output zeros.

``go_backwards=True`` on a lone layer keeps the same weights and runs the GRU over the
sequence from its end: its output, in the order it was computed, is
``jaxgru.gru(params, x[:, ::-1], batch_first=True)``'s. torch has no such GRU, so only
:func:`keras_to_params` and :func:`to_keras` (``go_backwards=True``) take it.

Keras is imported with ``KERAS_BACKEND=jax`` unless it is already imported or the variable is
set (the conversions themselves run on any backend). Needs the ``keras`` extra.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

__all__ = ["from_keras", "keras_to_params", "load_model", "run_keras", "to_keras"]


def _import_keras():
  if "keras" in sys.modules or "KERAS_BACKEND" in os.environ:
    import keras

    return keras
  os.environ["KERAS_BACKEND"] = "jax"  # read once, when keras is first imported; not left behind
  try:
    import keras
  finally:
    del os.environ["KERAS_BACKEND"]
  return keras


keras = _import_keras()

from parity import _arrays  # noqa: E402  (after keras, whose backend is chosen above)
from parity.frameworks import _inputs  # noqa: E402
from parity.weights import _storage, convert  # noqa: E402

# a keras.layers.GRU, LSTM, SimpleRNN or Bidirectional, a sequence of them, a keras.Sequential, or a .keras file
KerasLayers = Any
RECURRENT = (keras.layers.GRU, keras.layers.LSTM, keras.layers.SimpleRNN)
MODES = {keras.layers.GRU: "GRU", keras.layers.LSTM: "LSTM", keras.layers.SimpleRNN: "RNN"}


def _mode(layer: Any) -> str:
  half = layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer
  return next((m for cls, m in MODES.items() if type(half) is cls), "GRU")


def _rzn_to_zrh(a: np.ndarray, hidden: int) -> np.ndarray:
  """Gate blocks along axis 0, torch's (r, z, n) -> Keras's (z, r, h); its own inverse."""
  return np.concatenate([a[hidden : 2 * hidden], a[:hidden], a[2 * hidden :]])


def _negate_z(a: np.ndarray, hidden: int, variant: str) -> np.ndarray:
  """torch order (r, z, n): Keras's ``reset_after=False`` z is ``1 - z`` of ``jaxgru``'s classic GRU."""
  if variant == "torch":
    return a
  a = a.copy()
  a[hidden : 2 * hidden] *= -1
  return a


def load_model(path: str | os.PathLike) -> Any:
  """The model a ``.keras`` file holds, read by ``keras.saving.load_model`` in Keras's safe mode
  (no code in the file runs), without compiling it.

  Args:
    path: a ``.keras`` file.

  Returns:
    The Keras model.

  Raises:
    FileNotFoundError: no file at ``path``.
    ValueError: a directory, or not a model Keras can read (corrupt, another format, code that
      safe mode refuses), naming the file.

  Example:
    >>> import keras
    >>> keras.Sequential([keras.Input((5, 3)), keras.layers.GRU(4)]).save("gru.keras")
    >>> type(parity.keras.load_model("gru.keras")).__name__
    'Sequential'
  """
  path = _storage.existing_file(path, "a .keras file")
  try:
    return keras.saving.load_model(path, compile=False, safe_mode=True)
  except Exception as err:  # zipfile's, h5py's and Keras's own errors
    first = (str(err).strip().splitlines() or [""])[0]
    raise ValueError(f"{path} is not a Keras model that can be read safely: {type(err).__name__}: {first}") from None


def _layers(source: KerasLayers) -> list[Any]:
  if isinstance(source, str | os.PathLike):
    source = load_model(source)
  if isinstance(source, keras.Sequential):
    source = [layer for layer in source.layers if not isinstance(layer, keras.layers.InputLayer)]
  elif isinstance(source, (*RECURRENT, keras.layers.Bidirectional)):
    source = [source]
  if not isinstance(source, Sequence) or isinstance(source, str | bytes) or not source:
    raise TypeError(
      "expected a keras.layers.GRU, LSTM or SimpleRNN or a Bidirectional of one, a non-empty list of them, a "
      f"keras.Sequential of them or the path of a .keras file holding one, got {type(source).__name__}"
    )
  return list(source)


def _is(fn: Any, name: str) -> bool:
  """Whether a Keras activation is ``tanh`` or ``sigmoid`` (Keras's, its op, or JAX's own)."""
  known = {"tanh": (keras.activations.tanh, keras.ops.tanh, jax.numpy.tanh, jax.nn.tanh)}
  known["sigmoid"] = (keras.activations.sigmoid, keras.ops.sigmoid, jax.nn.sigmoid)
  return any(fn is f for f in known[name])


def _check_layer(layer: Any, where: str) -> dict[str, Any]:
  if type(layer) not in MODES:
    raise TypeError(
      f"{where} must be a keras.layers.GRU, LSTM or SimpleRNN or a Bidirectional of one, got {type(layer).__name__}"
    )
  mode = MODES[type(layer)]
  config = layer.get_config()
  problems = []
  if mode == "RNN":
    relu = keras.activations.relu, keras.ops.relu, jax.nn.relu
    if not (_is(layer.cell.activation, "tanh") or any(layer.cell.activation is f for f in relu)):
      problems.append(f"activation={config['activation']!r} (only tanh and relu map, torch's nonlinearity)")
  elif not (_is(layer.cell.activation, "tanh") and _is(layer.cell.recurrent_activation, "sigmoid")):
    problems.append(
      f"activation={config['activation']!r}, recurrent_activation={config['recurrent_activation']!r} (only tanh, sigmoid map)"
    )
  for key in ("dropout", "recurrent_dropout"):
    if config[key]:
      problems.append(f"{key}={config[key]} (torch's {mode} has no variational {key}; it would be lost)")
  if config["stateful"]:
    problems.append("stateful=True (its state carries over between calls; jaxgru takes h0 instead)")
  if problems:
    raise ValueError(f"{where} ({layer.name}) cannot map to jaxgru: " + "; ".join(problems))
  if not layer.built:
    raise ValueError(f"{where} ({layer.name}) has no weights yet: build it (call it once, or layer.build(input_shape))")
  return config


def _to_torch_order(a: np.ndarray, hidden: int, variant: str) -> np.ndarray:
  """(3U, ...) Keras gate blocks (z, r, h) -> torch's (r, z, n), z negated for ``classic``."""
  return _negate_z(_rzn_to_zrh(a, hidden), hidden, variant)


def _nonlinearity(layer: Any) -> str:
  return "tanh" if _is(layer.cell.activation, "tanh") else "relu"


def _layer_arrays(layer: Any, variant: str) -> dict[str, np.ndarray]:
  """One Keras GRU's, LSTM's or SimpleRNN's weights as torch's ``weight_ih`` ... (bias keys only
  with ``use_bias``; an LSTM's and a SimpleRNN's one bias in ``bias_ih``, ``bias_hh`` zero)."""
  cell = layer.cell
  hidden = cell.units
  numpy = lambda v: np.asarray(keras.ops.convert_to_numpy(v.value))
  if not isinstance(layer, keras.layers.GRU):  # the LSTM's gates are in torch's order already
    out = {"weight_ih": numpy(cell.kernel).T, "weight_hh": numpy(cell.recurrent_kernel).T}
    if cell.use_bias:
      out["bias_ih"] = numpy(cell.bias)
      out["bias_hh"] = np.zeros_like(out["bias_ih"])
    return out
  get = lambda a: _to_torch_order(a, hidden, variant)
  out = {"weight_ih": get(numpy(cell.kernel).T), "weight_hh": get(numpy(cell.recurrent_kernel).T)}
  if cell.use_bias:
    bias = numpy(cell.bias)
    if cell.reset_after:
      out["bias_ih"], out["bias_hh"] = get(bias[0]), get(bias[1])
    else:
      out["bias_ih"] = get(bias)
      out["bias_hh"] = np.zeros_like(out["bias_ih"])
  return out


def keras_to_params(source: KerasLayers, *, variant: str = "torch", nonlinearity: str = "tanh") -> dict[str, jax.Array]:
  """Keras GRU, LSTM or SimpleRNN layers as ``jaxgru`` params, one torch layer per Keras layer.

  Args:
    source: a built ``keras.layers.GRU`` (``LSTM``, ``SimpleRNN``), a
      ``keras.layers.Bidirectional`` of two, a list of such layers (a stack: all of one kind,
      with the same ``units``, ``use_bias``, ``reset_after`` and number of directions), a
      ``keras.Sequential`` of them, or the path of a ``.keras`` file holding such a model (read
      by :func:`load_model`, in Keras's safe mode).
    variant: GRUs: ``"torch"`` reads ``reset_after=True`` layers, ``"classic"``
      ``reset_after=False`` ones (z negated, the bias to ``bias_ih``, ``bias_hh`` zero).
    nonlinearity: SimpleRNNs: ``"tanh"`` reads layers whose activation is tanh, ``"relu"``
      those with relu (pass the same to :func:`jaxgru.rnn`: params do not record it).

  Returns:
    ``{"weight_ih_l0": ..., ...}`` in the layers' dtype.

  Raises:
    FileNotFoundError: a path with no file.
    TypeError: not a GRU, LSTM or SimpleRNN, a Bidirectional of one, a list of them or a path.
    ValueError: a file Keras cannot read safely (see :func:`load_model`); what does not map
      (listed in the module docstring), a ``reset_after`` that is not the ``variant``'s, an
      activation that is not the ``nonlinearity``'s, layers that do not stack (kinds, sizes),
      or ``go_backwards`` on a layer that is not the only one.

  Example:
    >>> import keras
    >>> layer = keras.layers.GRU(4, return_sequences=True)
    >>> _ = layer(np.ones((2, 5, 3), np.float32))  # built
    >>> sorted(parity.keras.keras_to_params(layer))
    ['bias_hh_l0', 'bias_ih_l0', 'weight_hh_l0', 'weight_ih_l0']
  """
  if variant not in ("torch", "classic"):
    raise ValueError(f"variant must be 'torch' or 'classic', got {variant!r}")
  if nonlinearity not in ("tanh", "relu"):
    raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
  layers = _layers(source)
  modes = [_mode(layer) for layer in layers]
  if len(set(modes)) > 1:
    raise ValueError(f"the layers are of several kinds ({modes}): one torch layer stacks layers of one kind")
  params: dict[str, np.ndarray] = {}
  first = None
  for index, layer in enumerate(layers):
    where = f"layer {index}"
    if isinstance(layer, keras.layers.Bidirectional):
      if layer.merge_mode != "concat":
        raise ValueError(
          f"{where} ({layer.name}) has merge_mode={layer.merge_mode!r}: torch concatenates the directions ('concat')"
        )
      halves = sorted([layer.forward_layer, layer.backward_layer], key=lambda half: half.go_backwards)  # torch's order
    else:
      halves = [layer]
    configs = [_check_layer(half, where) for half in halves]
    keys = ("units", "use_bias", "reset_after") if modes[0] == "GRU" else ("units", "use_bias")
    if len(configs) == 2 and any(configs[0][k] != configs[1][k] for k in keys):
      raise ValueError(
        f"{where} ({layer.name}): its two directions differ in {keys}: {[{k: c[k] for k in keys} for c in configs]}"
      )
    config = configs[0]
    if len(halves) == 1 and config["go_backwards"] and len(layers) > 1:
      raise ValueError(
        f"{where} ({layer.name}) has go_backwards=True: only a lone one-direction layer may (torch has no such layer)"
      )
    if modes[0] == "GRU" and config["reset_after"] != (variant == "torch"):
      want = "torch" if config["reset_after"] else "classic"
      raise ValueError(f"{where} ({layer.name}) has reset_after={config['reset_after']}: read it with variant={want!r}")
    found = {_nonlinearity(half) for half in halves} if modes[0] == "RNN" else {nonlinearity}
    if found != {nonlinearity}:
      raise ValueError(f"{where} ({layer.name}) has activation {sorted(found)}: read it with nonlinearity={sorted(found)[0]!r}")
    shape = (config["units"], config["use_bias"], len(halves))
    input_size = halves[0].cell.kernel.shape[0]
    if first is None:
      first = shape
    elif shape != first or input_size != first[0] * first[2]:
      raise ValueError(
        f"{where} ({layer.name}) does not stack on the layers before it as a torch {modes[0]} layer: (units, use_bias, directions) "
        f"{shape} against {first}, and its input size must be {first[0] * first[2]}, got {input_size}"
      )
    for half, suffix in zip(halves, ("", "_reverse"), strict=False):
      for name, array in _layer_arrays(half, variant).items():
        params[f"{name}_l{index}{suffix}"] = array
  return convert.state_dict_to_params(params)


def from_keras(source: KerasLayers, *, rngs: nnx.Rngs | None = None) -> Any:
  """Keras GRU layers as a :class:`jaxgru.GRU` (LSTM layers as a :class:`jaxgru.LSTM`,
  SimpleRNN layers as a :class:`jaxgru.RNN`; ``batch_first=True``, like Keras; eval mode).

  ``variant`` follows ``reset_after``, ``nonlinearity`` a SimpleRNN's activation; see
  :func:`keras_to_params` for what is accepted.

  Args:
    source: what :func:`keras_to_params` takes.
    rngs: the module's rngs; ``nnx.Rngs(0)`` when None.

  Returns:
    A deterministic :class:`jaxgru.GRU` (``LSTM``, ``RNN``) holding the layers' weights.

  Raises:
    FileNotFoundError, TypeError, ValueError: as :func:`keras_to_params`.

  Example:
    >>> import keras
    >>> layer = keras.layers.GRU(4, return_sequences=True)
    >>> _ = layer(np.ones((2, 5, 3), np.float32))
    >>> model = parity.keras.from_keras(layer)
    >>> model(jnp.ones((2, 5, 3)))[0].shape
    (2, 5, 4)
  """
  layers = _layers(source)
  first = layers[0].forward_layer if isinstance(layers[0], keras.layers.Bidirectional) else layers[0]
  if isinstance(first, RECURRENT) and first.go_backwards:
    mode = MODES[type(first)]
    raise ValueError(
      f"{first.name} has go_backwards=True: jaxgru.{mode} has no such layer. Take its weights with keras_to_params and "
      f"run jaxgru.{mode.lower()}(params, x[:, ::-1], batch_first=True)"
    )
  variant = "torch" if not isinstance(first, keras.layers.GRU) or first.reset_after else "classic"
  nonlinearity = _nonlinearity(first) if isinstance(first, keras.layers.SimpleRNN) else "tanh"
  params = keras_to_params(layers, variant=variant, nonlinearity=nonlinearity)
  return convert.module_from_params(
    params, batch_first=True, variant=variant, nonlinearity=nonlinearity, training=False, rngs=rngs
  )


def to_keras(
  source: Any,
  variables: Mapping[str, Any] | None = None,
  *,
  variant: str | None = None,
  nonlinearity: str | None = None,
  go_backwards: bool = False,
  return_state: bool = True,
  zero_output_for_mask: bool = True,
) -> list[Any]:
  """A ``jaxgru`` GRU, LSTM or RNN as built Keras layers holding its weights, one per torch layer.

  Each is a ``keras.layers.GRU`` (``LSTM``, ``SimpleRNN``; ``Bidirectional(...,
  merge_mode="concat")`` for two directions) with ``return_sequences=True``, in the parameters'
  dtype; a GRU's ``reset_after`` is ``variant == "torch"``, a SimpleRNN's ``activation`` the
  ``nonlinearity``. An LSTM's and a SimpleRNN's one bias is ``bias_ih + bias_hh`` (folded). Chain
  them (see :func:`run_keras`), or with ``return_state=False`` put them in a
  ``keras.Sequential``. Dropout between layers is not carried over.

  Args:
    source: a ``jaxgru`` ``GRU``, ``LSTM`` or ``RNN`` (NNX), a ``jaxgru.linen`` one with
      ``variables``, a torch ``nn.GRU``, ``nn.LSTM`` or ``nn.RNN``, Linen variables or params.
    variables: a Linen module's variables.
    variant: for a GRU's params, which GRU they are (a module's own when None, else ``"torch"``).
    nonlinearity: for an RNN's params, ``"tanh"`` or ``"relu"`` (a module's own when None, else
      ``"tanh"``).
    go_backwards: a lone one-direction layer that reads the sequence from its end.
    return_state: the layers also return their final state(s).
    zero_output_for_mask: zero outputs past each sequence's mask, as torch and ``jaxgru``.

  Returns:
    The built Keras layers, one per torch layer.

  Raises:
    TypeError: ``source`` is not a GRU, LSTM or RNN, their params or variables.
    ValueError: an unknown ``variant`` or ``nonlinearity``, ``go_backwards`` with several layers
      or two directions, an LSTM with ``proj_size``, or float64 weights where Keras's backend runs
      in float32.

  Example:
    >>> layers = parity.keras.to_keras(jaxgru.GRU(3, 4, num_layers=2, rngs=nnx.Rngs(0)))
    >>> [type(layer).__name__ for layer in layers]
    ['GRU', 'GRU']
  """
  params, found = convert.params_and_variant(source, variables)
  if variant is not None and variant not in ("torch", "classic"):
    raise ValueError(f"variant must be 'torch' or 'classic', got {variant!r}")
  if variant is not None and found is not None and variant != found:
    raise ValueError(f"variant={variant!r} but the module has variant={found!r}")
  variant = variant or found or "torch"
  if convert.is_cell(params):
    raise ValueError("params are a cell's (weight_ih, ...): pass a layer's (weight_ih_l0, ...)")
  convert.check_values(params, "params")
  arrays = {k: _arrays.array_to_numpy(v, f"params[{k!r}]") for k, v in params.items()}
  spec = convert.spec_of(arrays, modes=convert.MODES)
  mode = spec.mode
  if nonlinearity is not None and nonlinearity not in ("tanh", "relu"):
    raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
  own = getattr(source, "nonlinearity", None)
  if nonlinearity is not None and own is not None and nonlinearity != own:
    raise ValueError(f"nonlinearity={nonlinearity!r} but the module has nonlinearity={own!r}")
  nonlinearity = nonlinearity or own or "tanh"
  if spec.proj_size:
    raise ValueError(f"this LSTM has proj_size={spec.proj_size} (weight_hr): Keras's LSTM has no projection")
  if go_backwards and (spec.num_layers > 1 or spec.bidirectional):
    raise ValueError(f"go_backwards=True needs a one-layer, one-direction {mode} (Keras's backward layer alone)")
  hidden, dtype = spec.hidden_size, spec.dtype.name
  layers = []
  for layer in range(spec.num_layers):
    inputs = spec.input_size if layer == 0 else hidden * spec.num_directions
    options = dict(use_bias=spec.bias, return_sequences=True, return_state=return_state)
    options |= dict(zero_output_for_mask=zero_output_for_mask, dtype=dtype)
    options |= {"GRU": dict(reset_after=variant == "torch"), "RNN": dict(activation=nonlinearity)}.get(mode, {})
    cls = {"GRU": keras.layers.GRU, "LSTM": keras.layers.LSTM, "RNN": keras.layers.SimpleRNN}[mode]
    if spec.bidirectional:  # Bidirectional rebuilds its layers from their configs: set the weights after
      made = keras.layers.Bidirectional(cls(hidden, **options), merge_mode="concat", dtype=dtype)
      halves = [made.forward_layer, made.backward_layer]
    else:
      made = cls(hidden, go_backwards=go_backwards, **options)
      halves = [made]
    made.build((None, None, inputs))
    for half, suffix in zip(halves, ("", "_reverse"), strict=False):
      if mode != "GRU":  # torch's gate order; one bias, the two folded and rounded once
        weights = [arrays[f"weight_ih_l{layer}{suffix}"].T, arrays[f"weight_hh_l{layer}{suffix}"].T]
        if spec.bias:
          folded = arrays[f"bias_ih_l{layer}{suffix}"].astype(np.float64) + arrays[f"bias_hh_l{layer}{suffix}"]
          weights.append(folded.astype(spec.dtype))
        half.set_weights(weights)
        continue
      get = lambda kind, s=suffix, l=layer: _rzn_to_zrh(_negate_z(arrays[f"{kind}_l{l}{s}"], hidden, variant), hidden)
      weights = [get("weight_ih").T, get("weight_hh").T]
      if spec.bias and variant == "torch":
        weights.append(np.stack([get("bias_ih"), get("bias_hh")]))
      elif spec.bias:  # one bias per gate: the two folded, rounded once
        weights.append((get("bias_ih").astype(np.float64) + get("bias_hh")).astype(spec.dtype))
      half.set_weights(weights)
    layers.append(made)
  return layers


def run_keras(layers: KerasLayers, x: Any, h0: Any = None, lengths: Any = None) -> tuple[np.ndarray, Any]:
  """Keras layers from :func:`to_keras` (``return_state=True``) chained as one torch GRU (LSTM, RNN).

  Args:
    layers: what :func:`to_keras` returned (or what :func:`keras_to_params` takes).
    x: (B, T, I), batch first like Keras.
    h0: (L*D, B, H) as ``jaxgru`` and torch lay it out (an LSTM's pair ``(h0, c0)``), or None
      (zeros).
    lengths: (B,) sequence lengths, passed to Keras as the mask ``t < length``.

  Returns:
    The pair ``(output, h_n)``, (B, T, D*H) and (L*D, B, H), NumPy arrays; an LSTM's
    ``(output, (h_n, c_n))``.

  Raises:
    ValueError: shapes that do not fit the layers, or layers built without ``return_state``.

  Example:
    >>> model = jaxgru.GRU(3, 4, batch_first=True, rngs=nnx.Rngs(0))
    >>> out, h_n = parity.keras.run_keras(parity.keras.to_keras(model), np.ones((2, 5, 3), np.float32))
    >>> out.shape, h_n.shape
    ((2, 5, 4), (1, 2, 4))
  """
  layers = _layers(layers)
  first = layers[0].forward_layer if isinstance(layers[0], keras.layers.Bidirectional) else layers[0]
  lstm = isinstance(first, keras.layers.LSTM)
  states = sum(2 if isinstance(layer, keras.layers.Bidirectional) else 1 for layer in layers)
  units = getattr(first, "units", None)
  input_size = first.cell.kernel.shape[0] if isinstance(first, RECURRENT) and first.built else None
  if lstm and h0 is not None and not (isinstance(h0, tuple | list) and len(h0) == 2):
    raise ValueError(f"the layers are LSTMs: h0 must be the pair (h0, c0) or None, got {type(h0).__name__}")
  parts = list(h0) if lstm and h0 is not None else [h0] * (2 if lstm else 1)
  for k, (name, part) in enumerate(zip(("h0", "c0"), parts, strict=False)):
    x, parts[k], lengths = _inputs.check_sequence_inputs(
      x, part, lengths, batch_first=True, states=states, hidden=units, input_size=input_size, name=name
    )
  mask = None if lengths is None else np.arange(x.shape[1])[None, :] < lengths[:, None]
  x = keras.ops.convert_to_tensor(x)
  per = len(parts)  # states per direction: h, or an LSTM's h and c
  finals, start = [], 0
  for layer in layers:
    dirs = 2 if isinstance(layer, keras.layers.Bidirectional) else 1
    initial = [np.asarray(p[start + d]) for d in range(dirs) for p in parts] if parts[0] is not None else None
    kwargs = {} if initial is None else {"initial_state": initial}
    result = layer(x, mask=mask, **kwargs)
    if not isinstance(result, list | tuple) or len(result) != 1 + dirs * per:
      raise ValueError(f"{layer.name} must return its output and final state(s): build it with return_state=True")
    x, states = result[0], [np.asarray(keras.ops.convert_to_numpy(s)) for s in result[1:]]
    finals += [states[d * per : (d + 1) * per] for d in range(dirs)]
    start += dirs
  stacked = [np.stack([f[k] for f in finals]) for k in range(per)]
  return np.asarray(keras.ops.convert_to_numpy(x)), (tuple(stacked) if lstm else stacked[0])
