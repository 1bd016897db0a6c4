"""The deployment files stay in step with the code: every setting documented, gunicorn's config
valid, the guide's links alive."""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / "deploy" / "registration.env.example"


def settings_read_by_the_code() -> set[str]:
    """Names read from the environment by config.py and the app factory."""
    names: set[str] = set()
    for path in (ROOT / "config.py", ROOT / "registration" / "__init__.py"):
        names |= set(
            re.findall(r"""(?:env|environ)\.get\(\s*["']([A-Z][A-Z0-9_]+)["']""", path.read_text())
        )
    return names


def test_the_environment_example_lists_every_setting():
    names = settings_read_by_the_code()
    assert {
        "SECRET_KEY",
        "DATABASE_URL",
        "PROXY_FIX_X_PROTO",
        "LOG_FORMAT",
        "REGISTRATION_CONFIG",
    } <= names
    text = ENV_EXAMPLE.read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))
    missing = sorted(name for name in names if name not in documented and name not in text)
    assert missing == []
    # systemd's EnvironmentFile: plain KEY=value lines, no shell syntax.
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*=[^'\"`$]*", line), line


def test_the_environment_example_starts_nothing_insecure():
    values = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert values["REGISTRATION_CONFIG"] == "production"
    assert values["SECRET_KEY"] == ""  # to be generated; production refuses an empty one
    assert "FLASK_DEBUG" not in values


def test_gunicorn_accepts_its_config_and_loads_the_app(tmp_path):
    env = {
        **os.environ,
        "REGISTRATION_CONFIG": "production",
        "SECRET_KEY": "a-long-enough-production-secret",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}",
        "INSTANCE_PATH": str(tmp_path),
    }
    env.pop("FLASK_DEBUG", None)
    gunicorn = Path(sys.executable).parent / "gunicorn"
    result = subprocess.run(
        [str(gunicorn), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "--check-config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_gunicorn_config_keeps_tokens_out_of_its_log_and_trusts_no_proxy_itself():
    namespace = runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))
    assert namespace["wsgi_app"] == "registration:create_app()"
    assert namespace["accesslog"] is None
    assert namespace["secure_scheme_headers"] == {}


@pytest.mark.parametrize("unit", ["registration-web.service", "registration-worker@.service"])
def test_systemd_units_use_the_environment_file(unit):
    text = (ROOT / "deploy" / unit).read_text()
    assert "EnvironmentFile=/etc/registration/registration.env" in text
    assert re.search(r"^ExecStart=/opt/registration/\.venv/bin/", text, re.MULTILINE)


def test_the_guide_links_to_files_that_exist():
    guide = ROOT / "docs" / "deploy.md"
    links = re.findall(r"\]\((\.\./[^)#]+)\)", guide.read_text())
    assert links
    for link in links:
        assert (guide.parent / link).resolve().exists(), link
    assert "docs/deploy.md" in (ROOT / "README.md").read_text()


def test_make_run_on_another_port_puts_that_port_into_mail_links():
    """`make run PORT=…` serves there, and the links in its emails (BASE_URL) point there too:
    the worker and the web server both get it."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "BASE_URL"}
    plan = subprocess.run(
        ["make", "-n", "run", "PORT=5077"], cwd=root, env=env, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    starts = [line for line in plan.splitlines() if "flask --app registration" in line]
    assert any("run --host 127.0.0.1 --port 5077" in line for line in starts)
    assert any("mail worker" in line for line in starts)
    for line in starts:
        assert "BASE_URL=http://127.0.0.1:5077" in line, line
