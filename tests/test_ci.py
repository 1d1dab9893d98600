"""``bash scripts/test.sh`` (what ``.ci/run`` calls first): ruff's lint and format checks, then
pytest; ``.ci/run`` builds the wheels and makes the aarch64 userland beside the tests, then, only
when the tests passed, checks the release (x86-64 in the foreground, the emulated aarch64 beside
it and the documentation build); every step's time is printed at the end.

The scripts run against a stand-in repository whose ``scripts/setup.sh`` and release scripts
record their arguments and whose ``.venv/bin/python`` records its arguments and fails where told
to, so no set-up, lint, test or release check actually runs here.
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
  shutil.copy(ROOT / "scripts" / "steps.sh", tmp_path / "scripts" / "steps.sh")
  for name in ("setup", "userland", "wheel", "check_release", "docs"):
    (tmp_path / "scripts" / f"{name}.sh").write_text(f'echo "{name}${{*:+ $*}}" >> calls.log\n')
  (tmp_path / ".ci").mkdir()
  shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
  python = tmp_path / ".venv" / "bin" / "python"
  python.parent.mkdir(parents=True)
  python.write_text(FAKE_PYTHON)
  python.chmod(0o755)
  return tmp_path


BESIDE_TESTS = ["wheel", "userland bookworm-arm64 -- true"]  # in the background while the tests run
TESTS = ["setup", "-m ruff check .", "-m ruff format --check .", "-m pytest -n 2"]


def _run(repo, *args, **fail):
  env = dict(os.environ, **{f"FAIL_{k.upper()}": str(v) for k, v in fail.items()})
  done = subprocess.run(["bash", str(repo / ".ci" / "run"), *args], cwd=repo, env=env, capture_output=True, text=True)
  return done.returncode, (repo / "calls.log").read_text().splitlines(), done.stdout


def test_ci_runs_ruff_lint_and_format_checks_then_pytest_then_the_release_and_docs(repo):
  rc, calls, out = _run(repo)
  assert rc == 0
  aarch64 = "check_release --prebuilt --part aarch64"
  foreground = [c for c in calls if c not in BESIDE_TESTS and c != aarch64]
  assert foreground == ["userland --tools", *TESTS, "check_release --prebuilt --part x86", "docs"]
  assert sorted(c for c in calls if c in BESIDE_TESTS) == sorted(BESIDE_TESTS)
  assert calls.index("userland --tools") < min(calls.index(c) for c in BESIDE_TESTS)
  assert max(calls.index(c) for c in BESIDE_TESTS) < calls.index(aarch64)  # the wheel and its userland first
  table = out[out.index("== step times") :]
  for step in ("tools", "wheels", "arm64", "tests", "aarch64", "release", "docs", "total"):
    assert f"\n{step} " in table, table


@pytest.mark.parametrize("failing", ["check", "format"])
def test_ruff_failures_fail_ci_and_the_tests_still_run(repo, failing):
  rc, calls, out = _run(repo, **{failing: 1})
  assert rc == 1 and [c for c in calls if c not in BESIDE_TESTS][-1] == "-m pytest -n 2"  # and no release check
  assert "tests " in out[out.index("== step times") :]


def test_pytest_status_wins(repo):
  rc, _, _ = _run(repo, check=1, pytest=5)
  assert rc == 5
  assert subprocess.run(["bash", str(repo / "scripts" / "test.sh"), "-k", "x"], cwd=repo).returncode == 0
  assert (repo / "calls.log").read_text().splitlines()[-1] == "-m pytest -n 2 -k x"
