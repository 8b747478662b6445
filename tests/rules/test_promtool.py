"""promtool on every rule file (check) and every promtool test file (test), one call each."""

from __future__ import annotations

import shutil
import subprocess

from tests import harness
from tests.rules import contract


def promtool(*args: str, cwd=contract.ROOT) -> subprocess.CompletedProcess:
    """Run promtool; output captured as text."""
    return subprocess.run([harness.require_binary("promtool"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=240)


def test_promtool_check_rules_accepts_every_rule_file():
    files = [str(p.relative_to(contract.ROOT)) for p in contract.rule_files()]
    result = promtool("check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).count("SUCCESS") == len(files)


def test_promtool_unit_tests_pass():
    files = [str(p.relative_to(contract.ROOT)) for p in contract.test_files()]
    result = promtool("test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).count("SUCCESS") == len(files)


def test_promtool_unit_tests_catch_a_wrong_annotation(tmp_path):
    # A copy of one test file expecting a different description must fail.
    (tmp_path / "tests").mkdir()
    shutil.copy(contract.RULES_DIR / "data-quality.rules.yml", tmp_path)
    text = (contract.TESTS_DIR / "data-quality.test.yml").read_text()
    broken = text.replace("No session events arrived from android",
                          "No session events arrived from ios")
    assert broken != text
    (tmp_path / "tests" / "data-quality.test.yml").write_text(broken)
    result = promtool("test", "rules", "tests/data-quality.test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "IngestEventsMissingFromPlatform" in result.stdout + result.stderr
