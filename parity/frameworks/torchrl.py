r"""torchrl's recurrent ``GRUModule`` and ``jaxgru`` with episode resets: the same weights, the same rollout.

torchrl trains recurrent policies on rollouts of concatenated episodes. In recurrent mode its
``GRUModule`` reads a tensordict of batch shape (B, T) holding the input, ``is_init`` (True
where an episode starts) and the recurrent state a rollout stored, and restarts the state at
every ``is_init`` from the stored state there, which a rollout fills with zeros. That is
``jaxgru.gru(params, x, h0, batch_first=True, resets=is_init)``, the reset state zero.

- :func:`from_gru_module`: the module's ``torch.nn.GRU`` as a :class:`jaxgru.GRU` (batch-first).
- :func:`run_gru_module`: torchrl's outputs (and gradients) on a rollout, in recurrent mode.
- :func:`compare`: both sides on the same rollout; a :class:`parity.Report` of the outputs,
  ``h_n`` and the gradients of every parameter, ``x`` and ``h0``.

Bidirectional modules: torchrl runs every episode as its own sequence, both directions from
the state stored at the episode's first step (``h0`` for a row's first episode); ``jaxgru``'s
reverse direction starts the row's last episode from ``h0``. The two agree when ``h0`` is zero
(None), which :func:`compare` then requires; ``h_n``'s reverse half belongs to different
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
from torchrl.modules import GRUModule, set_recurrent_mode

import jaxgru
from parity import _arrays
from parity.proof import report as _report
from parity.proof import runs as _runs
from parity.weights import convert

__all__ = ["compare", "from_gru_module", "run_gru_module"]


def _gru_of(module: Any) -> torch.nn.GRU:
  if not isinstance(module, GRUModule):
    raise TypeError(f"module must be a torchrl.modules.GRUModule, got {type(module).__name__}")
  if not isinstance(module.gru, torch.nn.GRU):
    raise TypeError(f"module must wrap a torch.nn.GRU (python_based=False), got {type(module.gru).__name__}")
  return module.gru


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
  return convert.from_torch(_gru_of(module))


def _rollout(module: GRUModule, x: Any, is_init: Any, h0: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
  """Checked numpy ``x`` (B, T, I), ``is_init`` (B, T) and ``h0`` (L*D, B, H) or None."""
  gru = _gru_of(module)
  x = _report._as_numpy(x, "x")
  if x.ndim != 3 or x.shape[-1] != gru.input_size:
    raise ValueError(f"x must be (B, T, input_size={gru.input_size}), a batch of rollouts; got shape {x.shape}")
  is_init = np.asarray(is_init.cpu() if isinstance(is_init, torch.Tensor) else is_init)
  if is_init.dtype != np.bool_ or is_init.shape != x.shape[:2]:
    raise ValueError(f"is_init must be booleans of shape (B, T) = {x.shape[:2]}, got {is_init.dtype} of shape {is_init.shape}")
  h0 = _report._as_numpy(h0, "h0")
  directions = 2 if gru.bidirectional else 1
  state_shape = (gru.num_layers * directions, x.shape[0], gru.hidden_size)
  if h0 is not None and h0.shape != state_shape:
    raise ValueError(f"h0 must have shape (L*D, B, H) = {state_shape}, got {h0.shape}")
  return x, is_init, h0


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
  gru = _gru_of(module)
  x, is_init, h0 = _rollout(module, x, is_init, h0)
  dtype = next(gru.parameters()).dtype
  batch, steps = x.shape[:2]
  layers = gru.num_layers * (2 if gru.bidirectional else 1)
  x_t = torch.tensor(x, dtype=dtype, requires_grad=cotangents is not None)
  h0_t = None if h0 is None else torch.tensor(h0, dtype=dtype, requires_grad=cotangents is not None)
  first = torch.zeros(batch, layers, gru.hidden_size, dtype=dtype)
  if h0_t is not None:
    first = torch.where(torch.tensor(is_init[:, 0])[:, None, None], first, h0_t.transpose(0, 1))
  state = torch.cat([first[:, None], torch.zeros(batch, steps - 1, layers, gru.hidden_size, dtype=dtype)], 1)
  in_key, state_key = module.in_keys[0], module.in_keys[1]
  out_key, next_state_key = module.out_keys[0], module.out_keys[1]
  data = TensorDict({in_key: x_t, state_key: state, "is_init": torch.tensor(is_init)[..., None]}, batch_size=[batch, steps])
  for p in gru.parameters():
    p.grad = None
  with set_recurrent_mode(True):
    data = module(data)
  output = data.get(out_key)
  h_n = data.get(next_state_key)[:, -1].transpose(0, 1)
  result = {"output": output.detach().numpy(), "h_n": h_n.detach().numpy()}
  if cotangents is not None:
    d_out, d_h_n = (torch.as_tensor(np.asarray(c), dtype=dtype) for c in cotangents)
    loss = (output * d_out).sum() + (0 if gru.bidirectional else (h_n * d_h_n).sum())
    inputs = [x_t] + ([] if h0_t is None else [h0_t])
    names = [name for name, _ in gru.named_parameters()]
    grads = torch.autograd.grad(loss, [*inputs, *gru.parameters()], allow_unused=True)
    result["grads"] = {"x": grads[0].numpy()}
    if h0_t is not None:
      result["grads"]["h0"] = grads[1].numpy()
    for name, p, g in zip(names, gru.parameters(), grads[len(inputs) :], strict=True):
      result["grads"][name] = (torch.zeros_like(p) if g is None else g).detach().numpy()
  return result


def compare(
  module: GRUModule,
  jax_module: jaxgru.GRU | None,
  x: Any,
  is_init: Any,
  h0: Any = None,
  *,
  impl: str = "auto",
  seed: int = 0,
  tol: float | None = None,
) -> _report.Report:
  """torchrl's ``GRUModule`` in recurrent mode against ``jaxgru.gru(..., resets=is_init)``.

  Args:
    module: the torchrl module, the reference.
    jax_module: a :class:`jaxgru.GRU` configured like the module's GRU (batch-first), or None
      for :func:`from_gru_module`'s.
    x, is_init, h0: the rollout, as :func:`run_gru_module` takes it.
    impl: the ``jaxgru`` implementation that runs.
    seed: draws the output cotangents pulled back on both sides.
    tol: the pass threshold; by default :data:`parity.proof.report.TOLERANCES` of the dtype.

  Returns:
    A :class:`parity.Report` of ``output``, ``h_n`` (unidirectional modules) and ``grad NAME`` for
    every parameter, ``grad x`` and, with ``h0``, ``grad h0``.

  Raises:
    TypeError: ``module`` is not a ``GRUModule`` over a ``torch.nn.GRU``.
    ValueError: shapes that do not fit; a bidirectional module with ``h0`` (see above).

  Example:
    >>> from torchrl.modules import GRUModule
    >>> module = GRUModule(input_size=3, hidden_size=4, in_key="obs", out_key="features")
    >>> is_init = np.zeros((2, 6), bool); is_init[:, 0] = is_init[0, 3] = True
    >>> parity.torchrl.compare(module, None, np.ones((2, 6, 3), np.float32), is_init).ok
    True
  """
  gru = _gru_of(module)
  x, is_init, h0 = _rollout(module, x, is_init, h0)
  if gru.bidirectional and h0 is not None:
    raise ValueError(
      "a bidirectional GRUModule starts the reverse direction of a row's first episode from h0, jaxgru of its last; "
      "they agree for h0=None (zeros)"
    )
  jax_module = from_gru_module(module) if jax_module is None else _report._jax_module(gru, jax_module)
  dtype = _arrays.TORCH_TO_NUMPY[next(gru.parameters()).dtype]
  _arrays.check_jax_can_hold(dtype, "the module's parameters' dtype")
  tol = _report.TOLERANCES[dtype.name] if tol is None else tol
  rng = np.random.default_rng(seed)
  layers = gru.num_layers * (2 if gru.bidirectional else 1)
  cotangents = (
    rng.standard_normal((*x.shape[:2], gru.hidden_size * (2 if gru.bidirectional else 1))).astype(dtype),
    rng.standard_normal((layers, x.shape[0], gru.hidden_size)).astype(dtype),
  )
  with _runs.exact_matmuls():
    want = run_gru_module(module, x.astype(dtype), is_init, None if h0 is None else h0.astype(dtype), cotangents=cotangents)
  params = {k: jnp.asarray(v) for k, v in jax_module.state_dict().items()}
  if gru.bidirectional:
    cotangents = (cotangents[0], np.zeros_like(cotangents[1]))

  def loss(params, x, h0):
    out, h_n = jaxgru.gru(params, x, h0, batch_first=True, resets=jnp.asarray(is_init), impl=impl)
    return jnp.sum(out * cotangents[0]) + jnp.sum(h_n * cotangents[1]), (out, h_n)

  with jax.default_matmul_precision("highest"):
    h0_j = None if h0 is None else jnp.asarray(h0.astype(dtype))
    argnums = (0, 1) if h0 is None else (0, 1, 2)
    grads, (out, h_n) = jax.grad(loss, argnums=argnums, has_aux=True)(params, jnp.asarray(x.astype(dtype)), h0_j)
  rows = [_report._row("output", out, want["output"])]
  if not gru.bidirectional:
    rows.append(_report._row("h_n", h_n, want["h_n"]))
  rows += [_report._row(f"grad {name}", grads[0][name], want["grads"][name]) for name in want["grads"] if name not in ("x", "h0")]
  rows.append(_report._row("grad x", grads[1], want["grads"]["x"]))
  if h0 is not None:
    rows.append(_report._row("grad h0", grads[2], want["grads"]["h0"]))
  return _report.Report(tuple(rows), tol, f"torchrl GRUModule {dtype.name} cpu", f"jaxgru {dtype.name} impl={impl}")
