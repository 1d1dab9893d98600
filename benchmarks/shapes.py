"""The benchmark grid's shapes, their command-line spelling, and their FLOP counts.

Axis legend: T steps, B batch, I input size, H hidden size, L layers, D directions.
"""

from __future__ import annotations

import argparse
import dataclasses
import re

MODES = ("forward", "fwd+bwd", "train")


@dataclasses.dataclass(frozen=True)
class Shape:
  steps: int
  batch: int
  input_size: int
  hidden_size: int
  num_layers: int = 1
  bidirectional: bool = False

  @property
  def directions(self) -> int:
    return 2 if self.bidirectional else 1

  def layer_inputs(self, layer: int) -> int:
    """The input size of ``layer``: I for the first, D*H above it (as ``torch.nn.GRU``)."""
    return self.input_size if layer == 0 else self.directions * self.hidden_size

  @property
  def num_params(self) -> int:
    """Weights and biases, as ``torch.nn.GRU(..., bias=True)`` holds them."""
    h = self.hidden_size
    return sum(self.directions * (3 * h * (self.layer_inputs(k) + h) + 6 * h) for k in range(self.num_layers))

  def __str__(self) -> str:
    s = f"{self.steps}x{self.batch}x{self.input_size}x{self.hidden_size}"
    return s + (f"xL{self.num_layers}" if self.num_layers > 1 else "") + ("xbi" if self.bidirectional else "")


DEFAULT_SHAPES = (
  Shape(10, 190, 1, 16),  # the seed tutorial's
  Shape(100, 64, 128, 128),
  Shape(100, 64, 512, 512),
  Shape(100, 64, 1024, 1024),
  Shape(1000, 16, 64, 128),
  Shape(100, 64, 256, 256, 2, True),
)

_SHAPE = re.compile(r"^(\d+)x(\d+)x(\d+)x(\d+)((?:xL\d+)?)((?:x?bi)?)$")


def parse_shape(text: str) -> Shape:
  """``TxBxIxH``, optionally followed by ``xL<layers>`` and ``xbi``: ``100x64x256x256xL2xbi``."""
  match = _SHAPE.match(text.strip())
  if not match:
    raise argparse.ArgumentTypeError(f"shape must look like TxBxIxH[xL<layers>][xbi], e.g. 100x64x128x128xL2xbi; got {text!r}")
  steps, batch, inputs, hidden = (int(match.group(i)) for i in range(1, 5))
  layers = int(match.group(5)[2:]) if match.group(5) else 1
  if min(steps, batch, inputs, hidden, layers) < 1:
    raise argparse.ArgumentTypeError(f"every size in a shape must be >= 1, got {text!r}")
  return Shape(steps, batch, inputs, hidden, layers, bool(match.group(6)))


# Elementwise FLOPs per step, batch element, hidden unit and direction, counting every add,
# multiply and activation (sigmoid, tanh) as one: forward 6 bias adds, 2 gate sums, 2 sigmoids,
# r * (W_hn h + b_hn), its sum with W_in x + b_in, tanh, and h' = n + z * (h - n) (3).
ELEMENTWISE_FORWARD = 16
ADAM_PER_PARAM = 12  # moments (7), bias corrections, square root, division and the update (5)


def matmul_flops(shape: Shape, mode: str) -> float:
  """Matrix-product FLOPs: 2*T*B*3H*(I_l + H) per layer and direction forward.

  The backward pass does twice the forward's products (the gradients with respect to the
  input/state and to the weights), so ``fwd+bwd`` and ``train`` count three times the forward.
  """
  _check_mode(mode)
  s = shape
  forward = sum(
    s.directions * 2 * s.steps * s.batch * 3 * s.hidden_size * (s.layer_inputs(k) + s.hidden_size) for k in range(s.num_layers)
  )
  return forward if mode == "forward" else 3 * forward


def elementwise_flops(shape: Shape, mode: str) -> float:
  """The gates' elementwise FLOPs (:data:`ELEMENTWISE_FORWARD` per unit forward, twice that
  backward); ``train`` adds the loss (3 per output element) and Adam (:data:`ADAM_PER_PARAM`)."""
  _check_mode(mode)
  s = shape
  forward = ELEMENTWISE_FORWARD * s.num_layers * s.directions * s.steps * s.batch * s.hidden_size
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
