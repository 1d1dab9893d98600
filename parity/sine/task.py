r"""The seed tutorial's task, in JAX and in PyTorch: one GRU predicting a noisy sine wave.

The tutorial (``shared/seed/``) draws 200 points of ``sin`` over ``linspace(0, 100)`` plus
Gaussian noise (scale 0.1), cuts windows of 10 values each predicting the next value, and
trains ``GRU(1, 16) -> Linear(16, 1)`` on the last step's output with MSE and Adam (lr 1e-3),
200 full-batch epochs. This module holds that task once, for ``examples/sine.py`` (the
``jaxgru-sine`` command), the training-parity tests and the benchmarks:

- :func:`make_data`: the series and its windows, deterministic for a seed, with a held-out tail.
- :func:`init_params`, :func:`predict`, :func:`loss`: the model as pure JAX functions over
  ``{"gru": <torch GRU state-dict layout>, "fc": {"weight": (1, H), "bias": (1,)}}``.
- :func:`make_train_fn`: compiled full-batch training, a ``lax.scan`` over epochs.
- :class:`TorchSineModel`, :func:`train_torch`: the tutorial's PyTorch model and loop.
- :func:`params_to_torch`, :func:`params_from_torch`: the same weights on both sides.
- :func:`optax_twin`: the optax optimizer that computes what a torch optimizer computes.

Axis legend: N points, B windows (the batch), T window length, H hidden size, E epochs,
M ensemble members.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import jaxgru
from parity import _argtypes
from parity.weights.convert import params_to_state_dict, state_dict_to_params

Params = dict[str, dict[str, jax.Array]]
VARIANTS = _argtypes.VARIANTS


@dataclasses.dataclass(frozen=True)
class SineData:
  """The series and its windows: ``x[i] = series[i : i + T]`` predicts ``y[i] = series[i + T]``.

  Windows whose target lies in the held-out tail of the series are the test set; the others
  (the earlier ones) the training set. The test windows' inputs may reach back into the
  training part: they forecast one step ahead from the true history, like the tutorial's plot.
  """

  series: np.ndarray  # (N,)
  x_train: np.ndarray  # (B, T, 1)
  y_train: np.ndarray  # (B, 1)
  x_test: np.ndarray  # (B_test, T, 1), possibly B_test == 0
  y_test: np.ndarray  # (B_test, 1)

  @property
  def seq_len(self) -> int:
    return self.x_train.shape[1]

  @property
  def x_all(self) -> np.ndarray:
    """Every window in series order (training then test), shaped (B + B_test, T, 1)."""
    return np.concatenate([self.x_train, self.x_test])

  @property
  def first_test_target(self) -> int:
    """Index into ``series`` of the first held-out target (``len(series)`` when none is held out)."""
    return self.seq_len + len(self.x_train)


def make_data(
  seed: int = 0,
  n_points: int = 200,
  seq_len: int = 10,
  noise: float = 0.1,
  test_fraction: float = 0.0,
  dtype: Any = np.float32,
) -> SineData:
  """The tutorial's data: ``sin(linspace(0, 100, n_points)) + N(0, noise**2)``, cut into windows.

  Args:
    seed: seeds the noise (``np.random.default_rng(seed)``); the same seed gives the same data.
    n_points: length of the series (the tutorial: 200).
    seq_len: window length T (the tutorial: 10).
    noise: standard deviation of the Gaussian noise (the tutorial: 0.1).
    test_fraction: share of the series, taken from its end, whose points are only ever targets
      of test windows (the tutorial trains on every window: 0.0).
    dtype: NumPy dtype of the arrays (the tutorial's ``torch.FloatTensor``: float32).

  Raises:
    ValueError: a size or fraction out of range, or no training window left.
  """
  for name, value in (("n_points", n_points), ("seq_len", seq_len)):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
      raise ValueError(f"{name} must be a positive int, got {value!r}")
  if not noise >= 0:
    raise ValueError(f"noise must be >= 0, got {noise!r}")
  if not 0 <= test_fraction < 1:
    raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
  n_windows = n_points - seq_len
  n_test = round(test_fraction * n_points)
  if n_windows - n_test < 1:
    raise ValueError(
      f"no training window: {n_points} points give {max(n_windows, 0)} windows of seq_len={seq_len}, "
      f"and test_fraction={test_fraction} holds out the last {n_test} of them"
    )
  rng = np.random.default_rng(seed)
  series = np.sin(np.linspace(0, 100, n_points)) + rng.normal(scale=noise, size=n_points)
  series = series.astype(dtype)
  x = np.lib.stride_tricks.sliding_window_view(series[:-1], seq_len)[..., None].copy()  # (N - T, T, 1)
  y = series[seq_len:, None].copy()
  n_train = n_windows - n_test
  return SineData(series, x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def member_key(seed: int, member: int = 0) -> jax.Array:
  """The initialisation key of ensemble member ``member`` for ``seed``; member 0 is the single model."""
  return jax.random.fold_in(jax.random.key(seed), member)


def init_params(key: jax.Array, hidden_size: int = 16, *, input_size: int = 1, dtype: Any = jnp.float32) -> Params:
  """torch's default initialisation of the tutorial's model: every GRU parameter from
  U(-1/sqrt(H), 1/sqrt(H)) (:func:`jaxgru.init_gru_params`), and ``nn.Linear(H, 1)``'s weight
  and bias from U(-1/sqrt(H), 1/sqrt(H)) (what its Kaiming-uniform with ``a=sqrt(5)`` amounts to).
  The variants share parameters, so there is one initialisation for both."""
  k_gru, k_weight, k_bias = jax.random.split(key, 3)
  bound = 1.0 / math.sqrt(hidden_size)
  return {
    "gru": jaxgru.init_gru_params(k_gru, input_size, hidden_size, dtype=dtype),
    "fc": {
      "weight": jax.random.uniform(k_weight, (1, hidden_size), dtype, -bound, bound),
      "bias": jax.random.uniform(k_bias, (1,), dtype, -bound, bound),
    },
  }


def predict(params: Params, x: jax.Array, *, variant: str = "torch") -> jax.Array:
  """The model: (B, T, 1) windows -> (B, 1) next values, ``fc(gru(x)[:, -1])``."""
  out, _ = jaxgru.gru(params["gru"], x, batch_first=True, variant=variant)
  return out[:, -1] @ params["fc"]["weight"].T + params["fc"]["bias"]


def loss(params: Params, x: jax.Array, y: jax.Array, *, variant: str = "torch") -> jax.Array:
  """Mean squared error of :func:`predict` against ``y`` (B, 1), like ``nn.MSELoss()``."""
  return jnp.mean((predict(params, x, variant=variant) - y) ** 2)


def make_train_fn(optimizer: optax.GradientTransformation, *, variant: str = "torch", ensemble: bool = False) -> Callable:
  """Compiled full-batch training: ``train(params, opt_state, x, y, epochs) -> (params, opt_state, losses)``.

  One call runs ``epochs`` (static) epochs inside one ``lax.scan``; call it repeatedly for
  chunks of epochs (a progress bar, a loss line) without leaving compiled code for long.
  ``losses[e]`` is the loss *before* epoch ``e``'s update, as the tutorial's loop prints it.

  With ``ensemble=True`` the parameters and optimizer state carry a leading member axis M
  (``jax.vmap(init_params)(keys)``, ``jax.vmap(optimizer.init)(params)``), every member trains on
  the same data at once, and ``losses`` is (M, E).
  """
  if variant not in VARIANTS:
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
  value_and_grad = jax.value_and_grad(lambda p, x, y: loss(p, x, y, variant=variant))

  def chunk(params, opt_state, x, y, epochs):
    def epoch(carry, _):
      params, opt_state = carry
      value, grads = value_and_grad(params, x, y)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), value

    (params, opt_state), losses = jax.lax.scan(epoch, (params, opt_state), length=epochs)
    return params, opt_state, losses

  if ensemble:
    run = jax.vmap(chunk, in_axes=(0, 0, None, None, None))
    return jax.jit(lambda params, opt_state, x, y, epochs: run(params, opt_state, x, y, epochs), static_argnames="epochs")
  return jax.jit(chunk, static_argnames="epochs")


def optax_twin(optimizer: torch.optim.Optimizer) -> optax.GradientTransformation:
  r"""The optax optimizer computing what a torch ``Adam`` or ``SGD`` computes, same hyperparameters.

  - ``torch.optim.Adam(lr, betas, eps)`` -> ``optax.adam(lr, b1, b2, eps, eps_root=0)``. Both put
    ``eps`` outside the square root and after bias correction,
    :math:`p \leftarrow p - \mathrm{lr}\,\hat m / (\sqrt{\hat v} + \epsilon)`; they differ only in
    rounding (torch divides :math:`\sqrt{v}` by :math:`\sqrt{1-\beta_2^t}`, optax takes the root
    of :math:`v / (1-\beta_2^t)`).
  - ``torch.optim.SGD(lr, momentum, nesterov)`` with ``dampening=0`` -> ``optax.sgd(lr, momentum,
    nesterov)``: both keep :math:`b \leftarrow \mu b + g` from :math:`b_0 = 0` (torch's first
    buffer is ``g`` itself, the same thing) and step by :math:`b`, or :math:`g + \mu b` with Nesterov.

  Raises:
    ValueError: settings without an optax twin: ``weight_decay`` (optax's ``add_decayed_weights``
      sits elsewhere in the chain), ``amsgrad``, ``maximize``, SGD ``dampening`` (torch starts its
      buffer at ``g``, not ``(1 - dampening) g``), several parameter groups.
    TypeError: another optimizer class.
  """
  if len(optimizer.param_groups) != 1:
    raise ValueError(f"optimizer must have one parameter group, got {len(optimizer.param_groups)}")
  group = optimizer.param_groups[0]
  unsupported = {k: group.get(k) for k in ("weight_decay", "amsgrad", "maximize", "dampening") if group.get(k)}
  if unsupported:
    raise ValueError(f"{type(optimizer).__name__} with {unsupported} has no exact optax twin here")
  lr = float(group["lr"])
  if type(optimizer) is torch.optim.Adam:
    b1, b2 = group["betas"]
    return optax.adam(lr, b1=b1, b2=b2, eps=group["eps"], eps_root=0.0)
  if type(optimizer) is torch.optim.SGD:
    return optax.sgd(lr, momentum=group["momentum"] or None, nesterov=group["nesterov"])
  raise TypeError(f"optimizer must be a torch.optim.Adam or torch.optim.SGD, got {type(optimizer).__name__}")


class ClassicTorchGRU(torch.nn.Module):
  """A one-layer, batch-first GRU computing ``variant="classic"`` in PyTorch, with
  ``torch.nn.GRU``'s parameter names, shapes and initialisation: the tutorial's own equations,
  so that ``--variant classic`` has a torch twin to compare against."""

  def __init__(self, input_size: int, hidden_size: int):
    super().__init__()
    self.hidden_size = hidden_size
    bound = 1.0 / math.sqrt(hidden_size)
    shapes = {
      "weight_ih_l0": (3 * hidden_size, input_size),
      "weight_hh_l0": (3 * hidden_size, hidden_size),
      "bias_ih_l0": (3 * hidden_size,),
      "bias_hh_l0": (3 * hidden_size,),
    }
    for name, shape in shapes.items():
      self.register_parameter(name, torch.nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, I) -> output (B, T, H), h_n (1, B, H)."""
    size = self.hidden_size
    gi = x @ self.weight_ih_l0.T + self.bias_ih_l0
    w_rz, w_n = self.weight_hh_l0[: 2 * size], self.weight_hh_l0[2 * size :]
    b_rz, b_n = self.bias_hh_l0[: 2 * size], self.bias_hh_l0[2 * size :]
    h = x.new_zeros(x.shape[0], size)
    outputs = []
    for t in range(x.shape[1]):
      i_r, i_z, i_n = gi[:, t].chunk(3, dim=-1)
      h_r, h_z = (h @ w_rz.T + b_rz).chunk(2, dim=-1)
      r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
      candidate = torch.tanh(i_n + (r * h) @ w_n.T + b_n)
      h = (1 - z) * h + z * candidate
      outputs.append(h)
    return torch.stack(outputs, dim=1), h[None]


class TorchSineModel(torch.nn.Module):
  """The tutorial's ``GRUModel``: ``GRU(1, H, batch_first=True)``, then ``Linear(H, 1)`` on the last step.

  ``variant="classic"`` swaps ``nn.GRU`` for :class:`ClassicTorchGRU` (same parameters).
  """

  def __init__(self, hidden_size: int = 16, *, input_size: int = 1, variant: str = "torch"):
    super().__init__()
    if variant not in VARIANTS:
      raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    self.variant = variant
    if variant == "torch":
      self.gru = torch.nn.GRU(input_size, hidden_size, batch_first=True)
    else:
      self.gru = ClassicTorchGRU(input_size, hidden_size)
    self.fc = torch.nn.Linear(hidden_size, 1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    out, _ = self.gru(x)
    return self.fc(out[:, -1, :])


def params_to_torch(params: Params, *, variant: str = "torch") -> TorchSineModel:
  """A :class:`TorchSineModel` holding ``params`` bit for bit, in their dtype (CPU)."""
  gru = params_to_state_dict(params["gru"])
  weight = gru["weight_hh_l0"]
  model = TorchSineModel(weight.shape[1], input_size=gru["weight_ih_l0"].shape[1], variant=variant).to(weight.dtype)
  state = {f"gru.{k}": v for k, v in gru.items()}
  state |= {f"fc.{k}": torch.from_numpy(np.array(v)) for k, v in params["fc"].items()}
  model.load_state_dict(state)
  return model


def params_from_torch(model: TorchSineModel) -> Params:
  """The weights of a :class:`TorchSineModel` (or the tutorial's ``GRUModel``) as JAX params, bit for bit."""
  return {
    "gru": state_dict_to_params(model.gru.state_dict()),
    "fc": {k: jnp.asarray(v.detach().cpu().numpy()) for k, v in model.fc.state_dict().items()},
  }


def train_torch(
  model: torch.nn.Module,
  optimizer: torch.optim.Optimizer,
  x: Any,
  y: Any,
  epochs: int,
  callback: Callable[[int, float], None] | None = None,
) -> np.ndarray:
  """The tutorial's training loop, full batch: returns the (E,) loss before each epoch's step.

  ``x`` (B, T, 1) and ``y`` (B, 1) are arrays or tensors, cast to the model's dtype;
  ``callback(epoch, loss)`` runs after every epoch (epochs counted from 1).
  """
  dtype = next(model.parameters()).dtype
  x = torch.as_tensor(np.asarray(x)).to(dtype)
  y = torch.as_tensor(np.asarray(y)).to(dtype)
  criterion = torch.nn.MSELoss()
  losses = np.empty(epochs)
  model.train()
  for epoch in range(epochs):
    optimizer.zero_grad()
    value = criterion(model(x), y)
    value.backward()
    optimizer.step()
    losses[epoch] = value.item()
    if callback is not None:
      callback(epoch + 1, losses[epoch])
  return losses


def predict_torch(model: torch.nn.Module, x: Any) -> np.ndarray:
  """``model(x)`` in eval mode without gradients, as NumPy: (B, T, 1) -> (B, 1)."""
  dtype = next(model.parameters()).dtype
  model.eval()
  with torch.no_grad():
    return model(torch.as_tensor(np.asarray(x)).to(dtype)).numpy()
