"""The README's Python examples run as written."""

import pathlib
import re

import jax

README = pathlib.Path(__file__).parent.parent / "README.md"


def test_readme_python_blocks_run():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
  assert blocks, "README.md has no ```python block"
  with jax.default_matmul_precision("highest"):
    namespace: dict = {}
    for block in blocks:
      exec(compile(block, str(README), "exec"), namespace)
