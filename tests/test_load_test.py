"""The load test script (bench/load_test.py) runs end to end in its quick mode.

Speed targets live in the benchmark, not here: this only proves that the script starts both
servers on a temporary PostgreSQL database, drives them, and finds the invariants intact.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .databases import admin_url, skip_or_fail_without_postgres

pytestmark = [pytest.mark.slow, pytest.mark.postgresql]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def test_quick_load_test_passes_its_invariant_checks(tmp_path: Path) -> None:
    skip_or_fail_without_postgres()
    server = admin_url().render_as_string(hide_password=False)
    result = subprocess.run(
        [sys.executable, "bench/load_test.py", "--quick", "--database-url", server],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Invariants: PASS" in output
    assert "Target sign-up rate >= 0.5 x bare" in output
    assert "Target event page rate >= 0.5 x bare" in output
