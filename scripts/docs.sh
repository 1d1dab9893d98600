#!/usr/bin/env bash
# Builds the documentation site into docs/_build/html: sets up .venv (scripts/setup.sh), adds the
# docs toolchain (requirements/docs.txt: Sphinx, MyST-NB, sphinx-book-theme), then runs Sphinx
# with warnings as errors. Every code cell of the guides runs during the build; then
# docs/check_site.py checks the API reference. Extra arguments go to sphinx-build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "docs: installing the docs toolchain (requirements/docs.txt), then building the site: its guides run (several minutes)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/docs.txt 2>&1 | { grep -v "^WARNING: Location" || true; }
rm -rf docs/_build
JAX_PLATFORMS=cpu .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html "$@"
# every public name and method in objects.inv, nothing private, no garbled docstring section
JAX_PLATFORMS=cpu .venv/bin/python docs/check_site.py docs/_build/html
echo "docs: docs/_build/html/index.html"
