"""``bash scripts/test.sh`` (what ``.ci/run`` calls first): ruff's lint and format checks, then
pytest; then ``.ci/run`` calls ``scripts/check_release.sh`` and ``scripts/docs.sh``, only when
the tests passed.

The script runs against a stand-in repository whose ``scripts/setup.sh`` does nothing and whose
``.venv/bin/python`` records its arguments and fails where told to, so no set-up, lint or test
actually runs here.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/../../calls.log"
case " $* " in
  *" ruff check "*) exit "${FAIL_CHECK:-0}" ;;
  *" ruff format --check "*) exit "${FAIL_FORMAT:-0}" ;;
  *" pytest "*) exit "${FAIL_PYTEST:-0}" ;;
esac
"""


@pytest.fixture
def repo(tmp_path):
  (tmp_path / "scripts").mkdir()
  shutil.copy(ROOT / "scripts" / "test.sh", tmp_path / "scripts" / "test.sh")
  (tmp_path / "scripts" / "setup.sh").write_text("echo setup >> calls.log\n")
  (tmp_path / "scripts" / "check_release.sh").write_text("echo check_release >> calls.log\n")
  (tmp_path / "scripts" / "docs.sh").write_text("echo docs >> calls.log\n")
  (tmp_path / ".ci").mkdir()
  shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
  python = tmp_path / ".venv" / "bin" / "python"
  python.parent.mkdir(parents=True)
  python.write_text(FAKE_PYTHON)
  python.chmod(0o755)
  return tmp_path


def _run(repo, *args, **fail):
  env = dict(os.environ, **{f"FAIL_{k.upper()}": str(v) for k, v in fail.items()})
  done = subprocess.run(["bash", str(repo / ".ci" / "run"), *args], cwd=repo, env=env, capture_output=True, text=True)
  return done.returncode, (repo / "calls.log").read_text().splitlines()


def test_ci_runs_ruff_lint_and_format_checks_then_pytest(repo):
  rc, calls = _run(repo)
  assert rc == 0
  assert calls == ["setup", "-m ruff check .", "-m ruff format --check .", "-m pytest -n 2", "check_release", "docs"]


@pytest.mark.parametrize("failing", ["check", "format"])
def test_ruff_failures_fail_ci_and_the_tests_still_run(repo, failing):
  rc, calls = _run(repo, **{failing: 1})
  assert rc == 1 and calls[-1] == "-m pytest -n 2"  # and no release check


def test_pytest_status_wins(repo):
  rc, _ = _run(repo, check=1, pytest=5)
  assert rc == 5
  assert subprocess.run(["bash", str(repo / "scripts" / "test.sh"), "-k", "x"], cwd=repo).returncode == 0
  assert (repo / "calls.log").read_text().splitlines()[-1] == "-m pytest -n 2 -k x"
