"""argparse types shared by parity's command lines (``python -m parity``, ``jaxgru-sine``)."""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.HelpFormatter):
  """Appends ``(default: X)`` to an option's help where that says something: not for flags
  (``store_true``), options without a default, or help that already states its default."""

  def _get_help_string(self, action: argparse.Action) -> str:
    text = action.help or ""
    flag = isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction)
    if flag or action.default in (None, argparse.SUPPRESS) or "default" in text or not action.option_strings:
      return text
    return text + " (default: %(default)s)"


def plain(text: str) -> str:
  """A docstring's reStructuredText made plain for a terminal: ````code```` -> ``code``."""
  return text.replace("``", "")


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
