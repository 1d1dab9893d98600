"""The contenders, each as one callable per mode.

- ``torch``: ``torch.nn.GRU`` (cuDNN when the suite runs on a GPU), ``torch.optim.Adam``.
- ``jaxgru``: the functional core :func:`jaxgru.gru`, jitted, on the torch model's weights.
- ``jaxgru_pallas``: the same with ``impl="pallas"`` (the Pallas kernels); GPU only: on the CPU it
  would time Pallas' interpreter, so the suite leaves it out there (:data:`DEVICE_ONLY`).
- ``jaxgru_nnx``: the NNX module :class:`jaxgru.GRU`, split once and merged inside the jitted function.
- ``jaxgru_native``: :func:`jaxgru.gru` (``lstm``, ``rnn``) with ``impl="native"`` (the C++ kernel),
  where it is built; ``jaxgru_fused`` beside it, the XLA path that ``"auto"`` takes where the
  kernel does not serve.
- ``flax``: Flax's own ``nnx.RNN(nnx.GRUCell)`` per layer (``nnx.Bidirectional`` when bidirectional),
  the JAX baseline users have today, split and merged the same way.
- ``keras``: Keras 3's own ``keras.layers.GRU`` (``reset_after=True``, torch's equations),
  ``LSTM`` or ``SimpleRNN`` (``Bidirectional`` when bidirectional, one layer per torch layer) on the
  JAX backend, holding the torch model's weights (:func:`parity.keras.to_keras`), run as a jitted
  ``stateless_call`` over its variables (the ``keras`` extra). Since Keras 3.15 its JAX GRU is a
  ``lax.scan`` with the input projections hoisted out of the loop.
- ``onnxruntime``: ONNX Runtime's CPU GRU, LSTM and RNN kernels (fused C++ layers, weights
  prepacked when the session is made) on an ONNX model of ``GRU``, ``LSTM`` or ``RNN`` operators
  (:mod:`parity.onnx`) holding the torch model's weights; ``forward`` only, on the CPU only (the
  ``onnx`` extra).

The LSTM and the RNN (a shape's ``cell``) run against torch's ``nn.LSTM`` (oneDNN on the CPU) and
``nn.RNN``, jaxgru's functions (each implementation, the Pallas kernels on a GPU) and modules,
Flax's ``nnx.RNN(nnx.OptimizedLSTMCell)`` and ``nnx.RNN(nnx.SimpleCell)``, Keras and ONNX Runtime.

Modes: ``forward`` (torch under ``no_grad``); ``fwd+bwd``, the gradient of ``sum(output * cot)``
with respect to the parameters and the input for a fixed random cotangent; ``train``, one step of
MSE against a fixed target, its gradients and an Adam update (``optax.adam`` for JAX, jitted).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx

import jaxgru
from benchmarks.shapes import Shape

CONTENDERS = ("torch", "jaxgru", "jaxgru_nnx", "flax", "keras", "jaxgru_pallas", "onnxruntime") + (
  ("jaxgru_native", "jaxgru_fused") if jaxgru.native_available() else ()
)
DEVICE_ONLY = ("jaxgru_pallas",)  # skipped when the suite runs on the CPU
FORWARD_ONLY = ("onnxruntime",)  # inference engines: no gradients, no training step
TORCH_LAYERS = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM, "rnn": torch.nn.RNN}
JAX_LAYERS = {"gru": jaxgru.gru, "lstm": jaxgru.lstm, "rnn": jaxgru.rnn}
NNX_LAYERS = {"gru": jaxgru.GRU, "lstm": jaxgru.LSTM, "rnn": jaxgru.RNN}
LEARNING_RATE = 1e-3


class TorchGRU:
  """``torch.nn.GRU`` (``LSTM``, ``RNN``: the shape's cell) with its input, cotangent and Adam optimizer on ``device``."""

  def __init__(self, shape: Shape, x: np.ndarray, cot: np.ndarray, device: str):
    torch.manual_seed(0)
    layer = TORCH_LAYERS[shape.cell]
    self.model = layer(shape.input_size, shape.hidden_size, shape.num_layers, bidirectional=shape.bidirectional).to(device)
    self.x = torch.from_numpy(x).to(device)
    self.xg = self.x.clone().requires_grad_(True)
    self.cot = torch.from_numpy(cot).to(device)
    self.opt = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE)
    self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    self.calls = {"forward": self.forward, "fwd+bwd": self.fwd_bwd, "train": self.train}

  def state_dict(self) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}

  def forward(self) -> torch.Tensor:
    with torch.no_grad():
      out = self.model(self.x)[0]
    self.sync()
    return out

  def fwd_bwd(self) -> None:
    self.model.zero_grad(set_to_none=True)
    self.xg.grad = None
    (self.model(self.xg)[0] * self.cot).sum().backward()
    self.sync()

  def gradients(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The parameter and input gradients of one :meth:`fwd_bwd` call."""
    self.fwd_bwd()
    grads = {k: p.grad.detach().cpu().numpy() for k, p in self.model.named_parameters()}
    return grads, self.xg.grad.detach().cpu().numpy()

  def train(self) -> None:
    self.opt.zero_grad(set_to_none=True)
    torch.nn.functional.mse_loss(self.model(self.x)[0], self.cot).backward()
    self.opt.step()
    self.sync()


class OnnxRuntimeLayer:
  """ONNX Runtime's CPU GRU, LSTM or RNN on the torch model's weights: ``forward`` only, ``x``
  (T, B, I) float32.

  The session is made here (it prepacks the weights); ONNX Runtime picks its own thread count.
  """

  def __init__(self, x: np.ndarray, torch_state: dict[str, np.ndarray]):
    import onnxruntime as ort

    from parity import onnx as parity_onnx

    model = parity_onnx.model_proto(torch_state, h0=False)
    self.session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    self.feeds = {"input": x}

  def forward(self) -> np.ndarray:
    return self.session.run(["output"], self.feeds)[0]


def onnxruntime_missing() -> str | None:
  """Why the ``onnxruntime`` contender cannot run here, or None when it can."""
  try:
    import onnxruntime  # noqa: F401

    from parity import onnx  # noqa: F401
  except ImportError as err:
    return f"onnxruntime skipped: {err} (install the onnx extra)"
  return None


def keras_missing() -> str | None:
  """Why the ``keras`` contender cannot run here, or None when it can (Keras 3 on the JAX backend)."""
  try:
    from parity import keras as parity_keras

    backend = parity_keras.keras.backend.backend()
  except ImportError as err:
    return f"keras skipped: {err} (install the keras extra)"
  return None if backend == "jax" else f"keras skipped: its backend is {backend!r}, not 'jax' (KERAS_BACKEND)"


def keras_model(torch_state: dict[str, np.ndarray], shape: Shape) -> tuple[Any, list[jax.Array], Any]:
  """Keras's GRU (LSTM, SimpleRNN) stack holding torch's weights: ``(apply(variables, x), trainable variables,
  non-trainable ones)``, ``apply`` pure and jittable, x (T, B, I) time-major as torch's."""
  from parity import keras as parity_keras

  keras = parity_keras.keras
  layers = parity_keras.to_keras(torch_state, return_state=False)
  model = keras.Sequential([keras.Input((shape.steps, shape.input_size), batch_size=shape.batch), *layers])
  trainable = [jnp.asarray(v.value) for v in model.trainable_variables]
  fixed = [jnp.asarray(v.value) for v in model.non_trainable_variables]

  def apply(variables, x):
    out, _ = model.stateless_call(variables, fixed, jnp.swapaxes(x, 0, 1))  # Keras is batch first
    return jnp.swapaxes(out, 0, 1)

  return apply, trainable, fixed


FLAX_CELLS = {"gru": nnx.GRUCell, "lstm": nnx.OptimizedLSTMCell, "rnn": nnx.SimpleCell}


def flax_model(shape: Shape) -> list[nnx.Module]:
  """Flax's own stack: nnx.RNN(nnx.GRUCell) per layer (``OptimizedLSTMCell``, ``SimpleCell`` for the
  shape's cell), nnx.Bidirectional when bidirectional."""
  rngs = nnx.Rngs(0)
  layers = []
  for layer in range(shape.num_layers):

    def rnn(reverse: bool, inputs: int = shape.layer_inputs(layer)) -> nnx.RNN:
      cell = FLAX_CELLS[shape.cell](inputs, shape.hidden_size, rngs=rngs)
      return nnx.RNN(cell, time_major=True, reverse=reverse, keep_order=True, rngs=rngs)

    layers.append(nnx.Bidirectional(rnn(False), rnn(True), time_major=True, rngs=rngs) if shape.bidirectional else rnn(False))
  return nnx.List(layers) if hasattr(nnx, "List") else layers


def jax_fns(kind: str, shape: Shape, x: jax.Array, cot: jax.Array, torch_state: dict[str, np.ndarray]) -> dict[str, Any]:
  """``{mode: (jitted fn, args)}``; ``fn(*args)`` returns something to block on (``train``: the new state)."""
  if kind == "flax":
    graphdef, params, rest = nnx.split(flax_model(shape), nnx.Param, ...)

    def apply(p, x):
      out = x
      zeros = jnp.zeros((x.shape[1], shape.hidden_size), x.dtype)  # the carry, as torch's default h0
      carry = (zeros, zeros) if shape.cell == "lstm" else zeros  # Flax's LSTM carry: (c, h)
      for layer in nnx.merge(graphdef, p, rest):
        out = layer(out, initial_carry=(carry, carry) if shape.bidirectional else carry)
      return out

  elif kind in ("jaxgru", "jaxgru_pallas", "jaxgru_fused", "jaxgru_native"):
    params = {k: jnp.asarray(v) for k, v in torch_state.items()}
    impl = {"jaxgru_pallas": "pallas", "jaxgru_fused": "fused", "jaxgru_native": "native"}.get(kind, "auto")

    def apply(p, x):
      return JAX_LAYERS[shape.cell](p, x, impl=impl)[0]

  elif kind == "keras":
    apply, params, _ = keras_model(torch_state, shape)

  elif kind == "jaxgru_nnx":  # the NNX module, split once, merged inside the compiled function
    layer = NNX_LAYERS[shape.cell]
    model = layer(shape.input_size, shape.hidden_size, shape.num_layers, bidirectional=shape.bidirectional, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def apply(p, x):
      return nnx.merge(graphdef, p, rest)(x)[0]

  else:
    raise ValueError(f"kind must be one of {CONTENDERS[1:]}, got {kind!r}")

  opt = optax.adam(LEARNING_RATE)

  def fwd_bwd(p, x, cot):
    return jax.grad(lambda p, x: jnp.sum(apply(p, x) * cot), argnums=(0, 1))(p, x)

  def train(state, x, target):
    p, opt_state = state
    grads = jax.grad(lambda p: jnp.mean((apply(p, x) - target) ** 2))(p)
    updates, opt_state = opt.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state

  return {
    "forward": (jax.jit(apply), (params, x)),
    "fwd+bwd": (jax.jit(fwd_bwd), (params, x, cot)),
    "train": (jax.jit(train), ((params, opt.init(params)), x, cot)),
  }


def jax_call(compiled: Any, fn_args: tuple, mode: str) -> Callable[[], Any]:
  """A zero-argument call of ``compiled`` that blocks; ``train`` carries its state from call to call."""
  if mode != "train":
    return lambda: jax.block_until_ready(compiled(*fn_args))
  state = [fn_args[0]]

  def step():  # like a training loop
    state[0] = jax.block_until_ready(compiled(state[0], *fn_args[1:]))

  return step


def max_relative_error(got: dict[str, Any], want: dict[str, np.ndarray]) -> float:
  """max over arrays of max|got - want| / max|want|: one number for a whole set of gradients."""
  errors = []
  for name, w in want.items():
    g, w = np.asarray(got[name], np.float64), np.asarray(w, np.float64)
    errors.append(np.max(np.abs(g - w)) / max(np.max(np.abs(w)), 1e-30))
  return float(max(errors))
