"""The C engine builds on its own with its Makefile and passes its C tests."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "vendor" / "darknet"


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("cc") is None, reason="needs make and a C compiler")
def test_engine_builds_and_passes_its_own_tests(tmp_path):
    result = subprocess.run(["make", "-C", str(ENGINE), f"BUILD={tmp_path}", "test"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert " 0 failed" in result.stdout and "warning" not in result.stderr
