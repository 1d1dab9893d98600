"""The README is a landing page: its Python examples run as written and its relative links resolve."""

import pathlib
import re

import jax

ROOT = pathlib.Path(__file__).parent.parent
README = ROOT / "README.md"


def test_readme_python_blocks_run():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
  assert blocks, "README.md has no ```python block"
  with jax.default_matmul_precision("highest"):
    namespace: dict = {}
    for block in blocks:
      exec(compile(block, str(README), "exec"), namespace)


def test_readme_relative_links_resolve():
  links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
  local = [link for link in links if "://" not in link]
  assert local, "README.md links nowhere"
  missing = [link for link in local if not (ROOT / link).exists()]
  assert not missing, f"README.md links to files that do not exist: {missing}"


def test_readme_is_a_landing_page():
  assert len(README.read_text().splitlines()) <= 200


def test_readme_code_lines_fit_a_code_block():
  """GitHub shows a code block about 90 columns wide and cuts the rest off behind a scroll bar."""
  blocks = re.findall(r"```\w*\n(.*?)```", README.read_text(), flags=re.S)
  long = [line for block in blocks for line in block.splitlines() if len(line) > 88]
  assert not long, f"README.md code lines over 88 columns: {long}"
