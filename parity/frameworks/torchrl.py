r"""torchrl's recurrent ``GRUModule`` and ``LSTMModule`` and ``jaxgru`` with episode resets: the
same weights, the same rollout.

torchrl trains recurrent policies on rollouts of concatenated episodes. In recurrent mode its
``GRUModule`` reads a tensordict of batch shape (B, T) holding the input, ``is_init`` (True
where an episode starts) and the recurrent state a rollout stored, and restarts the state at
every ``is_init`` from the stored state there, which a rollout fills with zeros. That is
``jaxgru.gru(params, x, h0, batch_first=True, resets=is_init)``, the reset state zero. Its
``LSTMModule`` stores ``h`` and ``c`` and restarts both: ``jaxgru.lstm(params, x, (h0, c0),
batch_first=True, resets=is_init)``.

- :func:`from_gru_module`, :func:`from_lstm_module`: the module's ``torch.nn.GRU`` (``LSTM``) as
  a batch-first :class:`jaxgru.GRU` (:class:`jaxgru.LSTM`).
- :func:`run_gru_module`, :func:`run_lstm_module`: torchrl's outputs (and gradients) on a
  rollout, in recurrent mode.
- :func:`compare`: both sides on the same rollout; a :class:`parity.Report` of the outputs,
  ``h_n`` (an LSTM's ``c_n``) and the gradients of every parameter, ``x`` and ``h0`` (``c0``).

Bidirectional modules: torchrl runs every episode as its own sequence, both directions from
the state stored at the episode's first step (``h0`` for a row's first episode); ``jaxgru``'s
reverse direction starts the row's last episode from ``h0``. The two agree when ``h0`` is zero
(None), which :func:`compare` then requires; the final state's reverse half belongs to different
episodes on the two sides, so for bidirectional modules only the outputs and gradients are
compared.

Needs the ``torchrl`` extra (``torchrl``, ``tensordict``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from tensordict import TensorDict
from torchrl.modules import GRUModule, LSTMModule, set_recurrent_mode

import jaxgru
from parity import _arrays
from parity.proof import report as _report
from parity.proof import runs as _runs
from parity.weights import convert

__all__ = ["compare", "from_gru_module", "from_lstm_module", "run_gru_module", "run_lstm_module"]

# torchrl's module -> (the torch layer it wraps, its attribute)
_LAYERS = {GRUModule: (torch.nn.GRU, "gru"), LSTMModule: (torch.nn.LSTM, "lstm")}


def _layer_of(module: Any, kinds: tuple[type, ...] = (GRUModule, LSTMModule)) -> torch.nn.GRU | torch.nn.LSTM:
  """The torch layer inside a torchrl module of one of ``kinds``."""
  if not isinstance(module, kinds):
    names = " or ".join(f"torchrl.modules.{kind.__name__}" for kind in kinds)
    raise TypeError(f"module must be a {names}, got {type(module).__name__}")
  layer, attribute = _LAYERS[next(kind for kind in kinds if isinstance(module, kind))]
  inner = getattr(module, attribute)
  if not isinstance(inner, layer):
    raise TypeError(f"module must wrap a torch.nn.{layer.__name__} (python_based=False), got {type(inner).__name__}")
  return inner


def _is_lstm(layer: Any) -> bool:
  return isinstance(layer, torch.nn.LSTM)


def from_gru_module(module: GRUModule) -> jaxgru.GRU:
  """The ``torch.nn.GRU`` inside a torchrl ``GRUModule`` as a batch-first :class:`jaxgru.GRU`
  (same weights, same configuration); call it with ``resets=is_init``.

  Args:
    module: the torchrl ``GRUModule``.

  Returns:
    The :class:`jaxgru.GRU`.

  Raises:
    TypeError: ``module`` is not a ``GRUModule`` over a ``torch.nn.GRU``.

  Example:
    >>> from torchrl.modules import GRUModule
    >>> module = GRUModule(input_size=3, hidden_size=4, in_key="obs", out_key="features")
    >>> model = parity.torchrl.from_gru_module(module)
    >>> model.batch_first, model.hidden_size
    (True, 4)
  """
  return convert.from_torch(_layer_of(module, (GRUModule,)))


def from_lstm_module(module: LSTMModule) -> jaxgru.LSTM:
  """The ``torch.nn.LSTM`` inside a torchrl ``LSTMModule`` as a batch-first :class:`jaxgru.LSTM`
  (same weights, same configuration, ``proj_size`` kept); call it with ``resets=is_init``.

  Args:
    module: the torchrl ``LSTMModule``.

  Returns:
    The :class:`jaxgru.LSTM`.

  Raises:
    TypeError: ``module`` is not an ``LSTMModule`` over a ``torch.nn.LSTM``.

  Example:
    >>> from torchrl.modules import LSTMModule
    >>> module = LSTMModule(input_size=3, hidden_size=4, in_key="obs", out_key="features")
    >>> model = parity.torchrl.from_lstm_module(module)
    >>> model.batch_first, model.hidden_size
    (True, 4)
  """
  return convert.from_torch(_layer_of(module, (LSTMModule,)))


def _rollout(module: Any, x: Any, is_init: Any, h0: Any) -> tuple[np.ndarray, np.ndarray, tuple | None]:
  """Checked numpy ``x`` (B, T, I), ``is_init`` (B, T) and the initial state's parts ((h0,), or
  an LSTM's (h0, c0)), or None."""
  layer = _layer_of(module)
  x = _report._as_numpy(x, "x")
  if x.ndim != 3 or x.shape[-1] != layer.input_size:
    raise ValueError(f"x must be (B, T, input_size={layer.input_size}), a batch of rollouts; got shape {x.shape}")
  is_init = np.asarray(is_init.cpu() if isinstance(is_init, torch.Tensor) else is_init)
  if is_init.dtype != np.bool_ or is_init.shape != x.shape[:2]:
    raise ValueError(f"is_init must be booleans of shape (B, T) = {x.shape[:2]}, got {is_init.dtype} of shape {is_init.shape}")
  if h0 is None:
    return x, is_init, None
  state = _report._state(h0, _is_lstm(layer))
  parts = state if _is_lstm(layer) else (state,)
  rows = layer.num_layers * (2 if layer.bidirectional else 1)
  sizes = ((layer.proj_size or layer.hidden_size), layer.hidden_size) if _is_lstm(layer) else (layer.hidden_size,)
  for name, part, size in zip(_runs.state_names(_is_lstm(layer)), parts, sizes, strict=True):
    axis = "P" if size != layer.hidden_size else "H"  # a projected LSTM's h0
    if part.shape != (rows, x.shape[0], size):
      raise ValueError(f"{name} must have shape (L*D, B, {axis}) = {(rows, x.shape[0], size)}, got {part.shape}")
  return x, is_init, parts


def _run(module: Any, x: Any, is_init: Any, h0: Any, cotangents: tuple | None) -> dict[str, Any]:
  layer = _layer_of(module)
  lstm = _is_lstm(layer)
  x, is_init, parts = _rollout(module, x, is_init, h0)
  dtype = next(layer.parameters()).dtype
  batch, steps = x.shape[:2]
  rows = layer.num_layers * (2 if layer.bidirectional else 1)
  sizes = ((layer.proj_size or layer.hidden_size), layer.hidden_size) if lstm else (layer.hidden_size,)
  grad = cotangents is not None
  x_t = torch.tensor(x, dtype=dtype, requires_grad=grad)
  parts_t = None if parts is None else [torch.tensor(p, dtype=dtype, requires_grad=grad) for p in parts]
  data = {module.in_keys[0]: x_t, "is_init": torch.tensor(is_init)[..., None]}
  for k, size in enumerate(sizes):  # the stored state: the entering one at step 0, zeros after
    first = torch.zeros(batch, rows, size, dtype=dtype)
    if parts_t is not None:
      first = torch.where(torch.tensor(is_init[:, 0])[:, None, None], first, parts_t[k].transpose(0, 1))
    data[module.in_keys[1 + k]] = torch.cat([first[:, None], torch.zeros(batch, steps - 1, rows, size, dtype=dtype)], 1)
  data = TensorDict(data, batch_size=[batch, steps])
  for p in layer.parameters():
    p.grad = None
  with set_recurrent_mode(True):
    data = module(data)
  output = data.get(module.out_keys[0])
  finals = [data.get(key)[:, -1].transpose(0, 1) for key in module.out_keys[1:]]
  names = ("h_n", "c_n")
  result = {"output": output.detach().numpy()} | {n: f.detach().numpy() for n, f in zip(names, finals, strict=False)}
  if grad:
    d_out, *d_finals = (torch.as_tensor(np.asarray(c), dtype=dtype) for c in cotangents)
    loss = (output * d_out).sum()
    if not layer.bidirectional:
      for f, d in zip(finals, d_finals, strict=True):
        loss = loss + (f * d).sum()
    inputs = {"x": x_t} | ({} if parts_t is None else dict(zip(_runs.state_names(lstm), parts_t, strict=True)))
    named = list(layer.named_parameters())
    grads = torch.autograd.grad(loss, [*inputs.values(), *(p for _, p in named)], allow_unused=True)
    result["grads"] = {name: g.numpy() for name, g in zip(inputs, grads, strict=False)}
    for (name, p), g in zip(named, grads[len(inputs) :], strict=True):
      result["grads"][name] = (torch.zeros_like(p) if g is None else g).detach().numpy()
  return result


def run_gru_module(
  module: GRUModule, x: Any, is_init: Any, h0: Any = None, *, cotangents: tuple[Any, Any] | None = None
) -> dict[str, Any]:
  """Runs ``module`` in recurrent mode on a rollout.

  Args:
    module: a torchrl ``GRUModule`` (its keys as constructed).
    x: (B, T, I): B rows of T steps, episodes one after another in each row.
    is_init: (B, T) booleans, True where an episode starts.
    h0: (L*D, B, H), the state entering each row (zeros when None); a rollout stores it at step 0,
      zeros where step 0 starts an episode, and zeros at every other ``is_init``.
    cotangents: ``(d_output, d_h_n)`` to pull back (``d_h_n`` ignored for bidirectional modules).

  Returns:
    ``{"output": (B, T, D*H), "h_n": (L*D, B, H)}``, the state after each row's last step, and
    with ``cotangents`` ``"grads"``: every parameter's by torch's name, ``"x"`` and ``"h0"``.

  Raises:
    TypeError: ``module`` is not a ``GRUModule`` over a ``torch.nn.GRU``.
    ValueError: ``x``, ``is_init`` or ``h0`` of the wrong shape or dtype.

  Example:
    >>> from torchrl.modules import GRUModule
    >>> module = GRUModule(input_size=3, hidden_size=4, in_key="obs", out_key="features")
    >>> is_init = np.zeros((2, 6), bool); is_init[:, 0] = is_init[0, 3] = True
    >>> parity.torchrl.run_gru_module(module, np.ones((2, 6, 3), np.float32), is_init)["output"].shape
    (2, 6, 4)
  """
  _layer_of(module, (GRUModule,))
  return _run(module, x, is_init, h0, cotangents)


def run_lstm_module(
  module: LSTMModule, x: Any, is_init: Any, h0: Any = None, *, cotangents: tuple[Any, Any, Any] | None = None
) -> dict[str, Any]:
  """Runs ``module`` in recurrent mode on a rollout, h and c restarting together at every ``is_init``.

  Args:
    module: a torchrl ``LSTMModule`` (its keys as constructed).
    x: (B, T, I): B rows of T steps, episodes one after another in each row.
    is_init: (B, T) booleans, True where an episode starts.
    h0: the pair ``(h0, c0)``, (L*D, B, P or H) and (L*D, B, H), the state entering each row
      (zeros when None), stored as :func:`run_gru_module` stores a GRU's.
    cotangents: ``(d_output, d_h_n, d_c_n)`` to pull back (the last two ignored for
      bidirectional modules).

  Returns:
    ``{"output": (B, T, D*P), "h_n": (L*D, B, P), "c_n": (L*D, B, H)}`` (P = H without a
    projection) and with ``cotangents`` ``"grads"``: every parameter's by torch's name, ``"x"``,
    ``"h0"`` and ``"c0"``.

  Raises:
    TypeError: ``module`` is not an ``LSTMModule`` over a ``torch.nn.LSTM``, or ``h0`` not a pair.
    ValueError: ``x``, ``is_init`` or ``h0`` of the wrong shape or dtype.

  Example:
    >>> from torchrl.modules import LSTMModule
    >>> module = LSTMModule(input_size=3, hidden_size=4, in_key="obs", out_key="features")
    >>> is_init = np.zeros((2, 6), bool); is_init[:, 0] = is_init[0, 3] = True
    >>> run = parity.torchrl.run_lstm_module(module, np.ones((2, 6, 3), np.float32), is_init)
    >>> run["output"].shape, run["c_n"].shape
    ((2, 6, 4), (1, 2, 4))
  """
  _layer_of(module, (LSTMModule,))
  return _run(module, x, is_init, h0, cotangents)


def compare(
  module: GRUModule | LSTMModule,
  jax_module: jaxgru.GRU | jaxgru.LSTM | None,
  x: Any,
  is_init: Any,
  h0: Any = None,
  *,
  impl: str = "auto",
  seed: int = 0,
  tol: float | None = None,
) -> _report.Report:
  """torchrl's ``GRUModule`` or ``LSTMModule`` in recurrent mode against ``jaxgru.gru`` (``lstm``)
  with ``resets=is_init``.

  Args:
    module: the torchrl module, the reference.
    jax_module: a :class:`jaxgru.GRU` (:class:`jaxgru.LSTM`) configured like the module's layer
      (batch-first), or None for :func:`from_gru_module`'s (:func:`from_lstm_module`'s).
    x, is_init, h0: the rollout, as :func:`run_gru_module` (:func:`run_lstm_module`) takes it.
    impl: the ``jaxgru`` implementation that runs.
    seed: draws the output cotangents pulled back on both sides.
    tol: the pass threshold; by default :data:`parity.proof.report.TOLERANCES` of the dtype.

  Returns:
    A :class:`parity.Report` of ``output``, ``h_n`` and an LSTM's ``c_n`` (unidirectional
    modules) and ``grad NAME`` for every parameter, ``grad x`` and, with ``h0``, ``grad h0``
    (and ``grad c0``).

  Raises:
    TypeError: ``module`` is not a ``GRUModule`` over a ``torch.nn.GRU`` or an ``LSTMModule``
      over a ``torch.nn.LSTM``.
    ValueError: shapes that do not fit; a bidirectional module with ``h0`` (see above).

  Example:
    >>> from torchrl.modules import GRUModule
    >>> module = GRUModule(input_size=3, hidden_size=4, in_key="obs", out_key="features")
    >>> is_init = np.zeros((2, 6), bool); is_init[:, 0] = is_init[0, 3] = True
    >>> parity.torchrl.compare(module, None, np.ones((2, 6, 3), np.float32), is_init).ok
    True
  """
  layer = _layer_of(module)
  lstm = _is_lstm(layer)
  x, is_init, parts = _rollout(module, x, is_init, h0)
  if layer.bidirectional and parts is not None:
    raise ValueError(
      f"a bidirectional {type(module).__name__} starts the reverse direction of a row's first episode from h0, jaxgru "
      "of its last; they agree for h0=None (zeros)"
    )
  jax_module = convert.from_torch(layer) if jax_module is None else _report._jax_module(layer, jax_module)
  dtype = _arrays.TORCH_TO_NUMPY[next(layer.parameters()).dtype]
  _arrays.check_jax_can_hold(dtype, "the module's parameters' dtype")
  tol = _report.TOLERANCES[dtype.name] if tol is None else tol
  rng = np.random.default_rng(seed)
  rows, directions = layer.num_layers * (2 if layer.bidirectional else 1), 2 if layer.bidirectional else 1
  sizes = ((layer.proj_size or layer.hidden_size), layer.hidden_size) if lstm else (layer.hidden_size,)
  cotangents = (
    rng.standard_normal((*x.shape[:2], sizes[0] * directions)).astype(dtype),
    *(rng.standard_normal((rows, x.shape[0], size)).astype(dtype) for size in sizes),
  )
  cast = None if parts is None else tuple(p.astype(dtype) for p in parts)
  with _runs.exact_matmuls():
    want = _run(module, x.astype(dtype), is_init, None if cast is None else (cast if lstm else cast[0]), cotangents)
  params = {k: jnp.asarray(v) for k, v in jax_module.state_dict().items()}
  if layer.bidirectional:
    cotangents = (cotangents[0], *(np.zeros_like(c) for c in cotangents[1:]))

  def loss(params, x, state):
    options = dict(batch_first=True, resets=jnp.asarray(is_init), impl=impl)
    if lstm:
      out, finals = jaxgru.lstm(params, x, state, **options)
    else:
      out, h_n = jaxgru.gru(params, x, None if state is None else state[0], **options)
      finals = (h_n,)
    total = jnp.sum(out * cotangents[0]) + sum(jnp.sum(f * c) for f, c in zip(finals, cotangents[1:], strict=True))
    return total, (out, finals)

  with jax.default_matmul_precision("highest"):
    state = None if cast is None else tuple(jnp.asarray(p) for p in cast)
    argnums = (0, 1) if state is None else (0, 1, 2)
    grads, (out, finals) = jax.grad(loss, argnums=argnums, has_aux=True)(params, jnp.asarray(x.astype(dtype)), state)
  names = ("h_n", "c_n")
  rows_ = [_report._row("output", out, want["output"])]
  if not layer.bidirectional:
    rows_ += [_report._row(name, f, want[name]) for name, f in zip(names, finals, strict=False)]
  inputs = ("x", *_runs.state_names(lstm))
  rows_ += [_report._row(f"grad {name}", grads[0][name], want["grads"][name]) for name in want["grads"] if name not in inputs]
  rows_.append(_report._row("grad x", grads[1], want["grads"]["x"]))
  if state is not None:
    rows_ += [_report._row(f"grad {n}", g, want["grads"][n]) for n, g in zip(_runs.state_names(lstm), grads[2], strict=True)]
  side = f"torchrl {type(module).__name__} {dtype.name} cpu"
  return _report.Report(tuple(rows_), tol, side, f"jaxgru {dtype.name} impl={impl}")
