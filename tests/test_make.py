"""`make run` installs only what running needs and says what it does; `make test` adds the
test extras and the peers the tests start."""

import subprocess

from tests.harness import ROOT


def _dry_run(target: str) -> str:
    # -B: print every step as on a fresh checkout; -n: run none of them.
    return subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def test_make_run_installs_runtime_dependencies_only_and_says_so():
    steps = _dry_run("run")
    assert "pip install --disable-pip-version-check --progress-bar off -e ." in steps
    assert "[test]" not in steps
    assert "scripts/ensure-tools.sh run" in steps
    assert "echo \"make run: installing Pulse and its runtime dependencies" in steps
    assert steps.strip().endswith("pulse up --demo")


def test_make_test_installs_the_test_extras_and_peers():
    steps = _dry_run("test")
    assert "-e '.[test]'" in steps
    assert "scripts/ensure-tools.sh test" in steps

