r"""Cell parameters between ``jaxgru`` and Flax, Equinox and Haiku as pure ``jax.numpy``
functions: they trace under ``jit``, ``grad`` and ``vmap``, so a training loop that keeps its own
parameter tree (its checkpoints, its optimizer state) can map it to ``jaxgru``'s inside the step.

``jaxgru``'s side is a cell's params in torch's layout (``weight_ih`` (G*H, I), ``weight_hh``
(G*H, H), ``bias_ih``, ``bias_hh`` (G*H,)); the other side is the library's own tree:

- ``flax.linen.GRUCell`` (GRU): ``{"ir", "iz", "in": {kernel, bias}, "hr", "hz": {kernel},
  "hn": {kernel, bias}}``; out of ``jaxgru`` ``b_ir + b_hr`` and ``b_iz + b_hz`` are folded.
- ``flax.nnx.GRUCell`` (GRU): ``{"dense_i": {kernel, bias}, "dense_h": {kernel}}``; into
  ``jaxgru`` only, since it has no ``b_hn``.
- ``equinox.nn.GRUCell`` (GRU): ``{"weight_ih", "weight_hh", "bias", "bias_n"}``; folded as
  Linen's.
- ``haiku.GRU`` (GRU, ``variant="classic"``): ``{name: {"w_i", "w_h", "b"}}``, gates (z, r, a);
  all three bias pairs folded.
- ``flax.linen.LSTMCell`` and ``flax.linen.OptimizedLSTMCell`` (LSTM, the same tree):
  ``{"ii", "if", "ig", "io": {kernel}, "hi", "hf", "hg", "ho": {kernel, bias}}``; ``b_ih + b_hh``
  folded.
- ``flax.nnx.LSTMCell`` (LSTM): ``{"ii", "if_", "ig", "io": {kernel}, "hi", "hf", "hg", "ho":
  {kernel, bias}}``; folded.
- ``flax.nnx.OptimizedLSTMCell`` (LSTM): ``{"dense_i": {kernel}, "dense_h": {kernel, bias}}``;
  folded.
- ``equinox.nn.LSTMCell`` (LSTM): ``{"weight_ih", "weight_hh", "bias"}``; folded.
- ``haiku.LSTM`` (LSTM): ``{name + "/linear": {"w": (I+H, 4H), "b"}}``, gates (i, g, f, o),
  computing ``sigmoid(f + 1)``; folded, 1 taken off the forget gate's bias.
- ``flax.linen.SimpleCell`` (RNN): ``{"i": {kernel, bias}, "h": {kernel}}``; folded.
- ``flax.nnx.SimpleCell`` (RNN): ``{"dense_i": {kernel, bias}, "dense_h": {kernel}}``; folded.

Into ``jaxgru`` (:func:`from_tree`) every conversion is exact: each weight keeps its bits, and
the one bias the library holds goes to the side it adds on (Flax's LSTM cells add theirs to the
recurrent product: ``bias_hh``; the others: ``bias_ih``), the other bias zero. Haiku's LSTM adds
1 to its forget gate's pre-activation, which becomes ``bias_hh``'s f block (1; the rest zero).
Out of ``jaxgru`` (:func:`to_tree`) the two biases are folded into the library's one: the same
function in exact arithmetic (rounded once), but training then differs, as the module
:mod:`parity.frameworks.other_jax` explains. NNX's ``GRUCell`` has no ``b_hn``, so only the way
into ``jaxgru`` is offered for it (:func:`parity.frameworks.other_jax.to_flax_nnx` checks that
``b_hn`` is zero, which a traced function cannot).

The Flax trees are the params of ``module.init(...)["params"]`` (Linen) and
``nnx.to_pure_dict(nnx.state(cell, nnx.Param))`` (NNX); Equinox's are the cell's fields by name
(``from_tree`` also takes the cell itself; ``eqx.tree_at`` puts a dict back). Every cell here
uses its library's default activations (an LSTM's sigmoid and tanh, a ``SimpleCell``'s tanh
without ``residual``): a cell built otherwise computes something else.

Example:
  >>> params = jaxgru.init_lstm_cell_params(jax.random.key(0), 3, 4)
  >>> tree = jax.jit(lambda p: parity.other_jax.to_tree(p, "flax.linen.LSTMCell"))(params)
  >>> sorted(tree), tree["hi"]["bias"].shape
  (['hf', 'hg', 'hi', 'ho', 'if', 'ig', 'ii', 'io'], (4,))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["FORMATS", "from_tree", "to_tree"]

Params = dict[str, jax.Array]


class Format(NamedTuple):
  mode: str  # the torch layer: "GRU", "LSTM" or "RNN"
  to_tree: Callable[[Params, str], Any] | None  # None: not exact out of jaxgru
  from_tree: Callable[[Any, str], Params]
  name: str  # the default module name in the tree (Haiku), "" if none


def _blocks(a: jax.Array, order: tuple[int, ...], gates: int) -> jax.Array:
  parts = jnp.split(a, gates)
  return jnp.concatenate([parts[k] for k in order])


def _biases(params: Mapping[str, jax.Array], gates: int) -> tuple[jax.Array, jax.Array]:
  zeros = jnp.zeros(params["weight_hh"].shape[:1], params["weight_hh"].dtype)
  return params.get("bias_ih", zeros), params.get("bias_hh", zeros)


def _get(tree: Any, *path: str) -> jax.Array:
  node = tree
  for key in path:
    if isinstance(node, Mapping):
      if key not in node:
        raise ValueError(f"the tree has no entry {'/'.join(path)}: its keys at that level are {sorted(node)}")
      node = node[key]
    else:  # an Equinox module: its fields by name
      if not hasattr(node, key):
        raise ValueError(f"the tree has no entry {'/'.join(path)} (a {type(node).__name__})")
      node = getattr(node, key)
  return jnp.asarray(node)


def _cell(weight_ih, weight_hh, bias_ih, bias_hh) -> Params:
  return {"weight_ih": weight_ih, "weight_hh": weight_hh, "bias_ih": bias_ih, "bias_hh": bias_hh}


# GRU: torch's gates (r, z, n)


def _gru_to_linen(p: Params, name: str) -> dict:
  b_ih, b_hh = (jnp.split(b, 3) for b in _biases(p, 3))
  w_i, w_h = jnp.split(p["weight_ih"], 3), jnp.split(p["weight_hh"], 3)
  return {
    "ir": {"kernel": w_i[0].T, "bias": b_ih[0] + b_hh[0]},
    "iz": {"kernel": w_i[1].T, "bias": b_ih[1] + b_hh[1]},
    "in": {"kernel": w_i[2].T, "bias": b_ih[2]},
    "hr": {"kernel": w_h[0].T},
    "hz": {"kernel": w_h[1].T},
    "hn": {"kernel": w_h[2].T, "bias": b_hh[2]},
  }


def _gru_from_linen(t: Any, name: str) -> Params:
  get = lambda *path: _get(t, *path)
  b_hn = get("hn", "bias")
  zeros = jnp.zeros_like(b_hn)
  return _cell(
    jnp.concatenate([get(g, "kernel").T for g in ("ir", "iz", "in")]),
    jnp.concatenate([get(g, "kernel").T for g in ("hr", "hz", "hn")]),
    jnp.concatenate([get("ir", "bias"), get("iz", "bias"), get("in", "bias")]),
    jnp.concatenate([zeros, zeros, b_hn]),
  )


def _gru_from_nnx(t: Any, name: str) -> Params:
  bias = _get(t, "dense_i", "bias")
  return _cell(_get(t, "dense_i", "kernel").T, _get(t, "dense_h", "kernel").T, bias, jnp.zeros_like(bias))


def _gru_to_equinox(p: Params, name: str) -> dict:
  b_ih, b_hh = (jnp.split(b, 3) for b in _biases(p, 3))
  bias = jnp.concatenate([b_ih[0] + b_hh[0], b_ih[1] + b_hh[1], b_ih[2]])
  return {"weight_ih": p["weight_ih"], "weight_hh": p["weight_hh"], "bias": bias, "bias_n": b_hh[2]}


def _gru_from_equinox(t: Any, name: str) -> Params:
  bias_n = _get(t, "bias_n")
  zeros = jnp.zeros_like(bias_n)
  return _cell(_get(t, "weight_ih"), _get(t, "weight_hh"), _get(t, "bias"), jnp.concatenate([zeros, zeros, bias_n]))


_ZRN = (1, 0, 2)  # Haiku's (z, r, a) from torch's (r, z, n), and back: its own inverse


def _gru_to_haiku(p: Params, name: str) -> dict:
  b_ih, b_hh = _biases(p, 3)
  w_i, w_h = (_blocks(p[k], _ZRN, 3).T for k in ("weight_ih", "weight_hh"))
  return {name: {"w_i": w_i, "w_h": w_h, "b": _blocks(b_ih + b_hh, _ZRN, 3)}}


def _gru_from_haiku(t: Any, name: str) -> Params:
  b = _blocks(_get(t, name, "b"), _ZRN, 3)
  return _cell(_blocks(_get(t, name, "w_i").T, _ZRN, 3), _blocks(_get(t, name, "w_h").T, _ZRN, 3), b, jnp.zeros_like(b))


# LSTM: torch's gates (i, f, g, o)

_LINEN_LSTM = ("i", "f", "g", "o")


def _lstm_to_flax(p: Params, gates: tuple[str, ...]) -> dict:
  b = sum(_biases(p, 4))
  w_i, w_h, b = jnp.split(p["weight_ih"], 4), jnp.split(p["weight_hh"], 4), jnp.split(b, 4)
  tree = {f"i{g}": {"kernel": w.T} for g, w in zip(gates, w_i, strict=True)}
  return tree | {f"h{g[:1]}": {"kernel": w.T, "bias": c} for g, w, c in zip(gates, w_h, b, strict=True)}


def _lstm_from_flax(t: Any, gates: tuple[str, ...]) -> Params:
  bias_hh = jnp.concatenate([_get(t, f"h{g[:1]}", "bias") for g in gates])
  return _cell(
    jnp.concatenate([_get(t, f"i{g}", "kernel").T for g in gates]),
    jnp.concatenate([_get(t, f"h{g[:1]}", "kernel").T for g in gates]),
    jnp.zeros_like(bias_hh),
    bias_hh,
  )


_NNX_LSTM = ("i", "f_", "g", "o")  # NNX names the forget gate's input layer if_ (if is a keyword)


def _lstm_to_optimized(p: Params, name: str) -> dict:
  return {"dense_i": {"kernel": p["weight_ih"].T}, "dense_h": {"kernel": p["weight_hh"].T, "bias": sum(_biases(p, 4))}}


def _lstm_from_optimized(t: Any, name: str) -> Params:
  bias = _get(t, "dense_h", "bias")
  return _cell(_get(t, "dense_i", "kernel").T, _get(t, "dense_h", "kernel").T, jnp.zeros_like(bias), bias)


def _lstm_to_equinox(p: Params, name: str) -> dict:
  return {"weight_ih": p["weight_ih"], "weight_hh": p["weight_hh"], "bias": sum(_biases(p, 4))}


def _lstm_from_equinox(t: Any, name: str) -> Params:
  bias = _get(t, "bias")
  return _cell(_get(t, "weight_ih"), _get(t, "weight_hh"), bias, jnp.zeros_like(bias))


_IGFO = (0, 2, 1, 3)  # Haiku's (i, g, f, o) from torch's (i, f, g, o), and back: its own inverse


def _lstm_to_haiku(p: Params, name: str) -> dict:
  b = sum(_biases(p, 4))
  one = jnp.concatenate([jnp.zeros_like(c) if k != 1 else jnp.ones_like(c) for k, c in enumerate(jnp.split(b, 4))])
  w = jnp.concatenate([p["weight_ih"], p["weight_hh"]], axis=1)
  return {f"{name}/linear": {"w": _blocks(w, _IGFO, 4).T, "b": _blocks(b - one, _IGFO, 4)}}


def _lstm_from_haiku(t: Any, name: str) -> Params:
  w, b = _get(t, f"{name}/linear", "w"), _blocks(_get(t, f"{name}/linear", "b"), _IGFO, 4)
  hidden = w.shape[1] // 4
  w = _blocks(w.T, _IGFO, 4)
  one = jnp.concatenate([jnp.zeros_like(c) if k != 1 else jnp.ones_like(c) for k, c in enumerate(jnp.split(b, 4))])
  return _cell(w[:, : w.shape[1] - hidden], w[:, w.shape[1] - hidden :], b, one)


# RNN: one gate


def _rnn_to_linen(p: Params, name: str) -> dict:
  return {"i": {"kernel": p["weight_ih"].T, "bias": sum(_biases(p, 1))}, "h": {"kernel": p["weight_hh"].T}}


def _rnn_from_linen(t: Any, name: str) -> Params:
  bias = _get(t, "i", "bias")
  return _cell(_get(t, "i", "kernel").T, _get(t, "h", "kernel").T, bias, jnp.zeros_like(bias))


def _rnn_to_nnx(p: Params, name: str) -> dict:
  return {"dense_i": {"kernel": p["weight_ih"].T, "bias": sum(_biases(p, 1))}, "dense_h": {"kernel": p["weight_hh"].T}}


FORMATS: dict[str, Format] = {
  "flax.linen.GRUCell": Format("GRU", _gru_to_linen, _gru_from_linen, ""),
  "flax.nnx.GRUCell": Format("GRU", None, _gru_from_nnx, ""),
  "equinox.nn.GRUCell": Format("GRU", _gru_to_equinox, _gru_from_equinox, ""),
  "haiku.GRU": Format("GRU", _gru_to_haiku, _gru_from_haiku, "gru"),
  "flax.linen.LSTMCell": Format(
    "LSTM", lambda p, n: _lstm_to_flax(p, _LINEN_LSTM), lambda t, n: _lstm_from_flax(t, _LINEN_LSTM), ""
  ),
  "flax.linen.OptimizedLSTMCell": Format(
    "LSTM", lambda p, n: _lstm_to_flax(p, _LINEN_LSTM), lambda t, n: _lstm_from_flax(t, _LINEN_LSTM), ""
  ),
  "flax.nnx.LSTMCell": Format("LSTM", lambda p, n: _lstm_to_flax(p, _NNX_LSTM), lambda t, n: _lstm_from_flax(t, _NNX_LSTM), ""),
  "flax.nnx.OptimizedLSTMCell": Format("LSTM", _lstm_to_optimized, _lstm_from_optimized, ""),
  "equinox.nn.LSTMCell": Format("LSTM", _lstm_to_equinox, _lstm_from_equinox, ""),
  "haiku.LSTM": Format("LSTM", _lstm_to_haiku, _lstm_from_haiku, "lstm"),
  "flax.linen.SimpleCell": Format("RNN", _rnn_to_linen, _rnn_from_linen, ""),
  "flax.nnx.SimpleCell": Format("RNN", _rnn_to_nnx, _gru_from_nnx, ""),  # the same tree as NNX's GRUCell
}
_GATES = {"GRU": 3, "LSTM": 4, "RNN": 1}


def _format(name: Any) -> Format:
  if name not in FORMATS:
    raise ValueError(f"format must be one of {sorted(FORMATS)}, got {name!r}")
  return FORMATS[name]


def to_tree(params: Mapping[str, Any], target: str, *, name: str | None = None) -> Any:
  """A ``jaxgru`` cell's params as ``target``'s parameter tree, in ``jax.numpy`` (traceable).

  Args:
    params: cell params in torch's layout (``weight_ih``, ``weight_hh``, and ``bias_ih``,
      ``bias_hh`` unless the cell has no bias, in which case the target's biases are zero), of
      the ``target``'s cell (a GRU's for a GRU cell, ...). A GRU's for ``haiku.GRU`` must be
      ``variant="classic"``'s, the one Haiku computes.
    target: a key of :data:`FORMATS`, e.g. ``"flax.linen.LSTMCell"``.
    name: Haiku's module name (``"gru"``, ``"lstm"`` by default); ignored elsewhere.

  Returns:
    The target's tree (nested dicts of arrays), the params' dtype kept.

  Raises:
    ValueError: an unknown ``target``, ``"flax.nnx.GRUCell"`` (see above), params of another
      cell or with a projection (``weight_hr``: no library here has one), or a missing key.

  Example:
    >>> params = jaxgru.init_rnn_cell_params(jax.random.key(0), 3, 4)
    >>> tree = parity.other_jax.to_tree(params, "flax.nnx.SimpleCell")
    >>> tree["dense_i"]["kernel"].shape, tree["dense_h"]["kernel"].shape
    ((3, 4), (4, 4))
  """
  fmt = _format(target)
  if fmt.to_tree is None:
    raise ValueError(
      f"{target} has no b_hn, so not every jaxgru GRU cell maps to it: parity.other_jax.to_flax_nnx converts one "
      "whose b_hn is zero (it checks the values, which a traced function cannot)"
    )
  _check(params, fmt, target)
  return fmt.to_tree({k: jnp.asarray(v) for k, v in params.items()}, fmt.name if name is None else name)


def from_tree(tree: Any, source: str, *, name: str | None = None) -> Params:
  """``source``'s parameter tree as a ``jaxgru`` cell's params (torch's layout), in
  ``jax.numpy`` (traceable): exact, every weight's bits kept (see the module's table).

  Args:
    tree: the library's tree (see above); Equinox's may be the cell itself.
    source: a key of :data:`FORMATS`.
    name: Haiku's module name (``"gru"``, ``"lstm"`` by default); ignored elsewhere.

  Returns:
    ``{"weight_ih", "weight_hh", "bias_ih", "bias_hh"}``, the tree's dtype. Run a GRU from
    ``haiku.GRU`` with ``variant="classic"``.

  Raises:
    ValueError: an unknown ``source``, or an entry missing from the tree.

  Example:
    >>> import equinox as eqx
    >>> cell = eqx.nn.LSTMCell(3, 4, key=jax.random.key(0))
    >>> params = jax.jit(lambda c: parity.other_jax.from_tree(c, "equinox.nn.LSTMCell"))(cell)
    >>> params["weight_ih"].shape, float(abs(params["bias_hh"]).max())
    ((16, 3), 0.0)
  """
  fmt = _format(source)
  return fmt.from_tree(tree, fmt.name if name is None else name)


def _check(params: Mapping[str, Any], fmt: Format, target: str) -> None:
  if not isinstance(params, Mapping) or "weight_ih" not in params or "weight_hh" not in params:
    keys = sorted(params) if isinstance(params, Mapping) else type(params).__name__
    raise ValueError(f"params must be a cell's (weight_ih, weight_hh, bias_ih, bias_hh), got {keys}")
  if "weight_hr" in params:
    raise ValueError(f"params have a projection (weight_hr): {target} has none")
  rows, hidden = (tuple(jnp.shape(params["weight_hh"])) + (0, 0))[:2]
  if hidden == 0 or rows != _GATES[fmt.mode] * hidden:
    raise ValueError(
      f"{target} is a {fmt.mode} cell: weight_hh must have shape ({_GATES[fmt.mode]} * hidden_size, hidden_size), "
      f"got {tuple(jnp.shape(params['weight_hh']))}"
    )
