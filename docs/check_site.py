"""Checks a built site: ``python docs/check_site.py docs/_build/html`` (run by scripts/docs.sh).

Fails (exit 1, one line per problem) when:

- a public name is missing from the site's ``objects.inv`` (every name in ``jaxgru.__all__`` and
  ``parity.__all__``, the frameworks' ``__all__``, and the methods users call on the modules);
- a private name or inherited noise is documented (``_TorchParams``, ``_Layer``, ``_Cell``,
  ``set_view``, Linen's dataclass fields as attributes);
- a private base class is shown ("Bases: _TorchParams");
- a docstring came out garbled: a "Return type" that is a sentence (a ``Returns:`` line read as
  ``type: description``), a "Type" that is no type (an attribute's ``D: ...`` line read as
  ``type: description``), a parameter whose name holds a comma (several arguments folded into
  one line) or whose description is empty, a description read as a lettered or Roman-numbered
  list (a line that is only "I." or "H." starts one), or a path to a page's source
  (``docs/guides/x.md``) where a link to the page belongs.
"""

from __future__ import annotations

import html
import importlib
import pathlib
import re
import sys

LAYERS, CELLS = ("GRU", "LSTM", "RNN"), ("GRUCell", "LSTMCell", "RNNCell")
METHODS = {
  **{f"jaxgru.{name}": ("__call__", "state_dict", "load_state_dict") for name in LAYERS},
  **{f"jaxgru.{name}": ("__call__", "forward", "initialize_carry", "state_dict", "load_state_dict") for name in CELLS},
  **{f"jaxgru.linen.{name}": ("__call__",) for name in LAYERS},
  **{f"jaxgru.linen.{name}": ("__call__", "initialize_carry") for name in CELLS},
  "parity.Report": ("ok", "failures", "worst"),
}
FRAMEWORKS = (
  "parity.frameworks.keras",
  "parity.frameworks.onnx",
  "parity.frameworks.other_jax",
  "parity.frameworks.cell_trees",
  "parity.frameworks.torchrl",
)
FORBIDDEN = re.compile(
  r"_TorchParams|_Layer|_Cell\b|\.set_view$|"
  r"^jaxgru\.linen\.(GRU|LSTM|RNN)(Cell)?\.(param_dtype|dtype|carry_init|input_size|hidden_size|nonlinearity|proj_size)$"
)


def documented(site: pathlib.Path) -> set[str]:
  from sphinx.util.inventory import InventoryFile  # the docs toolchain's (requirements/docs.txt)

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


# a type as a signature spells it: names (dotted, subscripted) joined by "|", "," or "or"
TYPE = re.compile(r"^[\w.]+(\[.*\])?(\s*(\||,|\bor\b)\s*[\w.]+(\[.*\])?)*$")


def _text(fragment: str) -> str:
  return " ".join(re.sub(r"<[^>]+>", " ", html.unescape(fragment)).split())


def garbled(site: pathlib.Path) -> list[str]:
  problems = []
  for page in sorted((site / "api").rglob("*.html")):
    text, name = page.read_text(), page.relative_to(site)
    for match in re.finditer(r"Return type<span[^>]*>:</span></dt>\s*<dd[^>]*>(.*?)</dd>", text, re.S):
      if len(_text(match.group(1)).split()) > 6:
        problems.append(f"{name}: a Returns section read as a type: {_text(match.group(1))[:100]!r}")
    for match in re.finditer(r">Type<span[^>]*>:</span></dt>\s*<dd[^>]*>(.*?)</dd>", text, re.S):
      kind = _text(match.group(1))
      if not TYPE.match(kind) or re.fullmatch(r"[A-Z]", kind):  # a lone capital: an axis of the legend
        problems.append(f"{name}: a description read as a type: {kind[:100]!r}")
    for match in re.finditer(r"<strong>([^<]*\w[^<]*,[^<]*)</strong>", text):  # not Raises' "A, B" separator
      problems.append(f"{name}: arguments folded into one entry: {match.group(1)!r}")
    for match in re.finditer(r"<li><p><strong>(\w+)</strong>((?:(?!</li>).)*?)</p>", text, re.S):
      if _text(match.group(2)).rstrip().endswith("–"):
        problems.append(f"{name}: the argument {match.group(1)!r} has no description")
    for match in re.finditer(r'<ol class="(?:upper|lower)(?:alpha|roman)\b', text):
      problems.append(
        f"{name}: a description read as a lettered or Roman-numbered list: {_text(text[match.start() : match.start() + 200])[:80]!r}"
      )
    for match in re.finditer(r"Bases:(.*?)</p>", text, re.S):
      private = [base for base in _text(match.group(1)).split(", ") if base.lstrip().startswith("_")]
      if private:
        problems.append(f"{name}: a private base class shown: {', '.join(private)}")
    for path in sorted(set(re.findall(r"\bdocs/[\w/.-]+\.md\b", _text(text)))):
      problems.append(f"{name}: a path to a page's source where a link belongs: {path}")
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
