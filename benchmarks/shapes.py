"""The benchmark grid's shapes, their command-line spelling, and their FLOP counts.

A shape names its layer too: ``gru`` (the default), ``lstm`` or ``rnn`` (tanh), written
``lstm:100x64x128x128`` on the command line.

Axis legend: T steps, B batch, I input size, H hidden size, L layers, D directions, G gate blocks.
"""

from __future__ import annotations

import argparse
import dataclasses
import re

MODES = ("forward", "fwd+bwd", "train")
CELLS = ("gru", "lstm", "rnn")
GATES = {"gru": 3, "lstm": 4, "rnn": 1}


@dataclasses.dataclass(frozen=True)
class Shape:
  steps: int
  batch: int
  input_size: int
  hidden_size: int
  num_layers: int = 1
  bidirectional: bool = False
  cell: str = "gru"

  @property
  def gates(self) -> int:
    """G: the gate blocks stacked in each weight (3 for the GRU, 4 for the LSTM, 1 for the RNN)."""
    return GATES[self.cell]

  @property
  def directions(self) -> int:
    return 2 if self.bidirectional else 1

  def layer_inputs(self, layer: int) -> int:
    """The input size of ``layer``: I for the first, D*H above it (as ``torch.nn.GRU``)."""
    return self.input_size if layer == 0 else self.directions * self.hidden_size

  @property
  def num_params(self) -> int:
    """Weights and biases, as ``torch.nn.GRU(..., bias=True)`` (``LSTM``, ``RNN``) holds them."""
    h, g = self.hidden_size, self.gates
    return sum(self.directions * (g * h * (self.layer_inputs(k) + h) + 2 * g * h) for k in range(self.num_layers))

  def __str__(self) -> str:
    s = ("" if self.cell == "gru" else f"{self.cell}:") + f"{self.steps}x{self.batch}x{self.input_size}x{self.hidden_size}"
    return s + (f"xL{self.num_layers}" if self.num_layers > 1 else "") + ("xbi" if self.bidirectional else "")


GRU_SHAPES = (
  Shape(10, 190, 1, 16),  # the seed tutorial's
  Shape(100, 64, 128, 128),
  Shape(100, 64, 512, 512),
  Shape(100, 64, 1024, 1024),
  Shape(1000, 16, 64, 128),
  Shape(100, 64, 256, 256, 2, True),
)
# the LSTM and the RNN at the GRU's shapes but the seed's (a GRU task)
DEFAULT_SHAPES = GRU_SHAPES + tuple(dataclasses.replace(s, cell=cell) for cell in ("lstm", "rnn") for s in GRU_SHAPES[1:])

_SHAPE = re.compile(r"^(?:(gru|lstm|rnn):)?(\d+)x(\d+)x(\d+)x(\d+)((?:xL\d+)?)((?:x?bi)?)$")


def parse_shape(text: str) -> Shape:
  """``[cell:]TxBxIxH``, optionally followed by ``xL<layers>`` and ``xbi``: ``lstm:100x64x256x256xL2xbi``."""
  match = _SHAPE.match(text.strip())
  if not match:
    raise argparse.ArgumentTypeError(
      f"shape must look like [gru:|lstm:|rnn:]TxBxIxH[xL<layers>][xbi], e.g. lstm:100x64x128x128xL2xbi; got {text!r}"
    )
  steps, batch, inputs, hidden = (int(match.group(i)) for i in range(2, 6))
  layers = int(match.group(6)[2:]) if match.group(6) else 1
  if min(steps, batch, inputs, hidden, layers) < 1:
    raise argparse.ArgumentTypeError(f"every size in a shape must be >= 1, got {text!r}")
  return Shape(steps, batch, inputs, hidden, layers, bool(match.group(7)), match.group(1) or "gru")


# Elementwise FLOPs per step, batch element, hidden unit and direction, counting every add,
# multiply and activation (sigmoid, tanh) as one. GRU: 6 bias adds, 2 gate sums, 2 sigmoids,
# r * (W_hn h + b_hn), its sum with W_in x + b_in, tanh, and h' = n + z * (h - n) (3). LSTM: 8 bias
# adds, 4 gate sums, 3 sigmoids, 2 tanh, c' = f c + i g (3), h' = o tanh(c') (1). RNN: 2 bias adds,
# the sum, the nonlinearity.
ELEMENTWISE_FORWARD = {"gru": 16, "lstm": 21, "rnn": 4}
ADAM_PER_PARAM = 12  # moments (7), bias corrections, square root, division and the update (5)


def matmul_flops(shape: Shape, mode: str) -> float:
  """Matrix-product FLOPs: 2*T*B*G*H*(I_l + H) per layer and direction forward.

  The backward pass does twice the forward's products (the gradients with respect to the
  input/state and to the weights), so ``fwd+bwd`` and ``train`` count three times the forward.
  """
  _check_mode(mode)
  s = shape
  forward = sum(
    s.directions * 2 * s.steps * s.batch * s.gates * s.hidden_size * (s.layer_inputs(k) + s.hidden_size)
    for k in range(s.num_layers)
  )
  return forward if mode == "forward" else 3 * forward


def elementwise_flops(shape: Shape, mode: str) -> float:
  """The gates' elementwise FLOPs (:data:`ELEMENTWISE_FORWARD` per unit forward, twice that
  backward); ``train`` adds the loss (3 per output element) and Adam (:data:`ADAM_PER_PARAM`)."""
  _check_mode(mode)
  s = shape
  forward = ELEMENTWISE_FORWARD[s.cell] * s.num_layers * s.directions * s.steps * s.batch * s.hidden_size
  if mode == "forward":
    return forward
  total = 3 * forward
  if mode == "train":
    total += 3 * s.steps * s.batch * s.directions * s.hidden_size + ADAM_PER_PARAM * s.num_params
  return total


def flops(shape: Shape, mode: str) -> float:
  """All FLOPs of one call: :func:`matmul_flops` plus :func:`elementwise_flops`."""
  return matmul_flops(shape, mode) + elementwise_flops(shape, mode)


def _check_mode(mode: str) -> None:
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
