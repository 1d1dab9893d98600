"""docs/check_site.py fails on each way a docstring has come out wrong on the API pages; the
fragments are Sphinx's HTML for those docstrings (sphinx-book-theme, napoleon)."""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "docs"))
import check_site  # noqa: E402

FIELD = '<dl class="field-list simple"><dt class="field-odd">{}<span class="colon">:</span></dt><dd class="field-odd"><p>{}</p></dd></dl>'
ARG = "<li><p><strong>{}</strong> (<em>int</em>) – {}</p></li>"

FAULTS = {
  "a line that is only 'I.' read as a list": (
    '<li><p><strong>input_size</strong> (<em>int</em>) – </p><ol class="upperalpha simple" start="9"><li><p></p></li></ol></li>',
    ["has no description", "lettered or Roman-numbered list"],
  ),
  "an attribute's 'D: ...' read as its type": (FIELD.format("Type", "D"), ["a description read as a type: 'D'"]),
  "a sentence as a property's type": (FIELD.format("Type", "Whether every quantity passed"), ["a description read as a type"]),
  "a Returns line read as a type": (
    FIELD.format("Return type", "The reason as one sentence (not built"),
    ["a Returns section read as a type"],
  ),
  "a private base": (
    '<p>Bases: <code class="xref py py-class docutils literal notranslate"><span class="pre">_TorchParams</span></code></p>',
    ["a private base class shown: _TorchParams"],
  ),
  "a bare path to a guide": (
    ARG.format("impl", "interpreted on the CPU (the guide “Implementations”, docs/guides/implementations.md)"),
    ["a path to a page's source where a link belongs: docs/guides/implementations.md"],
  ),
  "arguments folded into one": ("<li><p><strong>x, h0</strong> – the input</p></li>", ["arguments folded into one entry"]),
}
SOUND = "".join(
  [
    ARG.format("input_size", "the features of each input step, I."),
    FIELD.format("Type", "int"),
    FIELD.format("Type", "str | None"),
    FIELD.format("Return type", "tuple[jax.Array, jax.Array]"),
    '<p>Bases: <code class="xref py py-class docutils literal notranslate"><span class="pre">Module</span></code></p>',
    '<ol class="arabic simple"><li><p>parity first</p></li></ol>',
    '<a class="reference internal" href="../guides/implementations.html">Implementations</a>',
  ]
)


def _problems(tmp_path: pathlib.Path, body: str) -> list[str]:
  (tmp_path / "api").mkdir(exist_ok=True)
  (tmp_path / "api" / "page.html").write_text(f"<html><body>{body}</body></html>")
  return check_site.garbled(tmp_path)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_is_found(tmp_path, fault):
  body, expected = FAULTS[fault]
  problems = _problems(tmp_path, SOUND + body)
  for words in expected:
    assert any(words in p for p in problems), (words, problems)
  assert len(problems) == len(expected), problems


def test_a_sound_page_passes(tmp_path):
  assert _problems(tmp_path, SOUND) == []
