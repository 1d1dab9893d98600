"""argparse types shared by parity's command lines (``python -m parity``, ``jaxgru-sine``)."""

from __future__ import annotations

import argparse

# The sine task's GRU equations (--variant): torch.nn.GRU's, or the seed tutorial's classic ones.
VARIANTS = ("torch", "classic")


def int_at_least(low: int):
  """An argparse type: an integer >= ``low`` (argparse names the flag in its error)."""

  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
      raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value

  return parse


def seed(text: str) -> int:
  """A seed: an integer in [0, 2**32), which NumPy, JAX and torch all accept.

  Raises:
    argparse.ArgumentTypeError: ``text`` is not such an integer (argparse names the flag).
  """
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
  if not 0 <= value < 2**32:
    raise argparse.ArgumentTypeError(f"must be in [0, 2**32), got {value}")
  return value
