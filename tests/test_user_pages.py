"""The user pages describe the software and its measurements, never how the work was organised:
no issue numbers, no sessions, in the README, the changelog, the docs and the performance log
(which the docs render)."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = sorted(
  [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "benchmarks" / "NOTES.md"]
  + [p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts]
)
# the work's history: issue numbers and trackers, and who ran what in which session
HISTORY = re.compile(
  r"\bissues? #?\d+|\b(?:the|an|this|that|its)\s+issue\b|\bissue's\b"
  r"|\b(?:this|previous|that|earlier|a|no)\s+sessions?\b|\bsessions?'s?\b|\bsessions\b|\bsession\s+that\b",
  re.IGNORECASE,
)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_project_history_in_user_pages(page):
  hits = [
    f"{page.relative_to(ROOT)}:{n}: {line.strip()}"
    for n, line in enumerate(page.read_text().splitlines(), 1)
    if HISTORY.search(line)
  ]
  assert not hits, "user pages describe the software, not how the work was done:\n" + "\n".join(hits)


def test_the_check_catches_history():
  for text in ("measured against issue 12's targets", "issues 25 and 26", "the session that wrote it", "this session's runs"):
    assert HISTORY.search(text), text
  for text in ("making the session", "the ONNX Runtime session is made", "a reissue", "tissue 3"):
    assert not HISTORY.search(text), text


def test_command_help_is_plain_text_with_one_default_each():
  """``--help`` of the user commands: no reStructuredText markup, no ``(default: False)`` on flags,
  no option whose default is stated twice."""
  from parity.proof import cli as parity_cli
  from parity.sine import cli as sine_cli

  for parser in (parity_cli.build_parser(), sine_cli.build_parser()):
    text = parser.format_help()
    assert "``" not in text and ":func:" not in text, text
    assert "(default: False)" not in text and "(default: True)" not in text, text
    for line in " ".join(text.split()).split("--"):
      assert line.count("default") <= 1, line


def test_the_index_example_runs(capsys):
  """The landing page's example, as written."""
  (code,) = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "index.md").read_text(), re.S)
  exec(compile(code, "docs/index.md", "exec"), {})
  assert capsys.readouterr().out.strip() == "True"
