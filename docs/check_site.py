"""Checks a built site: ``python docs/check_site.py docs/_build/html`` (run by scripts/docs.sh).

Fails (exit 1, one line per problem) when:

- a public name is missing from the site's ``objects.inv`` (every name in ``jaxgru.__all__`` and
  ``parity.__all__``, the frameworks' ``__all__``, and the methods users call on the modules);
- a private name or inherited noise is documented (``_TorchParams``, ``set_view``, Linen's
  dataclass fields as attributes);
- a docstring section came out garbled: a "Return type" that is a sentence (a ``Returns:`` line
  read as ``type: description``) or a parameter whose name holds a comma (several arguments
  folded into one line).
"""

from __future__ import annotations

import html
import importlib
import pathlib
import re
import sys

from sphinx.util.inventory import InventoryFile

METHODS = {
  "jaxgru.GRU": ("__call__", "state_dict", "load_state_dict"),
  "jaxgru.GRUCell": ("__call__", "forward", "initialize_carry", "state_dict", "load_state_dict"),
  "jaxgru.linen.GRU": ("__call__",),
  "jaxgru.linen.GRUCell": ("__call__", "initialize_carry"),
  "parity.Report": ("ok", "failures", "worst"),
}
FRAMEWORKS = ("parity.frameworks.keras", "parity.frameworks.onnx", "parity.frameworks.other_jax", "parity.frameworks.torchrl")
FORBIDDEN = re.compile(
  r"_TorchParams|\.set_view$|^jaxgru\.linen\.GRU(Cell)?\.(param_dtype|dtype|carry_init|input_size|hidden_size)$"
)


def documented(site: pathlib.Path) -> set[str]:
  with open(site / "objects.inv", "rb") as f:
    inventory = InventoryFile.load(f, "", lambda base, uri: uri)
  groups = inventory.data.items() if hasattr(inventory, "data") else inventory.items()
  return {name for kind, entries in groups if kind.startswith("py:") for name in entries}


def required() -> set[str]:
  import jaxgru
  import parity

  names = {f"jaxgru.{n}" for n in jaxgru.__all__ if n != "linen"} | {"jaxgru.linen"}
  names |= {f"parity.{n}" for n in parity.__all__}
  for module in FRAMEWORKS:
    names |= {f"{module}.{n}" for n in importlib.import_module(module).__all__ if not n.isupper()}
  names |= {f"{owner}.{method}" for owner, methods in METHODS.items() for method in methods}
  return names


def garbled(site: pathlib.Path) -> list[str]:
  problems = []
  for page in sorted((site / "api").rglob("*.html")):
    text = page.read_text()
    for match in re.finditer(r"Return type</dt>\s*<dd[^>]*>(.*?)</dd>", text, re.S):
      words = re.sub(r"<[^>]+>", " ", html.unescape(match.group(1))).split()
      if len(words) > 6:
        problems.append(f"{page.relative_to(site)}: a Returns section read as a type: {' '.join(words)[:100]!r}")
    for match in re.finditer(r"<strong>([^<]*\w[^<]*,[^<]*)</strong>", text):  # not Raises' "A, B" separator
      problems.append(f"{page.relative_to(site)}: arguments folded into one entry: {match.group(1)!r}")
  return problems


def main(site: str) -> int:
  root = pathlib.Path(site)
  have = documented(root)
  problems = [f"not in objects.inv: {name}" for name in sorted(required() - have)]
  problems += [f"documented but private or inherited noise: {name}" for name in sorted(have) if FORBIDDEN.search(name)]
  problems += garbled(root)
  for line in problems:
    print(line)
  print(f"site check: {len(have)} names documented, {len(problems)} problem(s)")
  return 1 if problems else 0


if __name__ == "__main__":
  if len(sys.argv) != 2:
    sys.exit(__doc__.split("\n\n")[0])
  sys.exit(main(sys.argv[1]))
