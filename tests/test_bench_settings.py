"""The load test measures what the deploy guide recommends unless told otherwise."""

from __future__ import annotations

import runpy

from bench import load_test


def test_the_load_test_runs_the_deploy_configuration_by_default():
    args = load_test.parse_args([])
    assert load_test.gunicorn_overrides(args) == []
    conf = runpy.run_path(str(load_test.GUNICORN_CONF))
    assert load_test.deploy_settings(args) == (
        conf["worker_class"],
        conf["workers"],
        conf["threads"],
    )
    assert not args.new_connections


def test_the_command_line_changes_only_what_it_names():
    args = load_test.parse_args(["--worker-class", "sync", "--workers", "5"])
    assert load_test.gunicorn_overrides(args) == ["--workers", "5", "--worker-class", "sync"]
    assert load_test.deploy_settings(args)[:2] == ("sync", 5)


def test_the_recommended_workers_are_threaded():
    """docs/deploy.md explains why (and the README's load-test numbers show it)."""
    conf = runpy.run_path(str(load_test.GUNICORN_CONF))
    assert conf["worker_class"] == "gthread" and conf["threads"] >= 2
