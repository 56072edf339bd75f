"""Safe defaults: DEBUG off, no public keys, HTTPS settings that follow how the site is served."""

from __future__ import annotations

import json
import os
import runpy
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from apps.core.management.commands.runplatform import Command as RunPlatform
from apps.core.management.commands.runplatform import is_loopback
from apps.datasets import services as dataset_services
from webapp import checks
from webapp.keyfiles import read_or_create_key
from workers.data.pii_fakes import pseudonym

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "webapp" / "settings.py"
DEV_KEY = "django-insecure-atelier-development-key-change-me"
OWN_VARS = ("DJANGO_", "ATELIER_", "DATABASE_URL")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_VARS)}
    env.update(extra)
    return env


def settings_with(monkeypatch, **env: str) -> dict:
    """webapp/settings.py evaluated under exactly this environment (nothing of ours inherited)."""
    for name in list(os.environ):
        if name.startswith(OWN_VARS):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


# ---------------------------------------------------------------- DEBUG and HTTPS


def test_debug_is_off_unless_asked_for(monkeypatch):
    assert settings_with(monkeypatch)["DEBUG"] is False
    assert settings_with(monkeypatch, DJANGO_DEBUG="1")["DEBUG"] is True


def test_plain_http_on_loopback_has_no_https_only_settings(monkeypatch):
    s = settings_with(monkeypatch)
    assert s["HTTPS"] is False
    assert not s.get("SECURE_SSL_REDIRECT") and not s.get("SESSION_COOKIE_SECURE")
    assert not s.get("CSRF_COOKIE_SECURE") and not s.get("SECURE_HSTS_SECONDS")


def test_a_site_served_beyond_loopback_is_https_only(monkeypatch):
    s = settings_with(monkeypatch, DJANGO_ALLOWED_HOSTS="atelier.example.com")
    assert s["HTTPS"] is True
    assert s["SECURE_SSL_REDIRECT"] and s["SESSION_COOKIE_SECURE"] and s["CSRF_COOKIE_SECURE"]
    assert s["SECURE_HSTS_SECONDS"] == 31536000


def test_django_https_decides_explicitly(monkeypatch):
    lan = settings_with(monkeypatch, DJANGO_ALLOWED_HOSTS="atelier.lan", DJANGO_HTTPS="0")
    assert lan["HTTPS"] is False and not lan.get("SECURE_SSL_REDIRECT")
    local = settings_with(monkeypatch, DJANGO_HTTPS="1")
    assert local["HTTPS"] is True and local["SESSION_COOKIE_SECURE"]


def test_login_throttling_comes_from_the_environment(monkeypatch):
    s = settings_with(
        monkeypatch, ATELIER_LOGIN_FAILURE_LIMIT="3", ATELIER_LOGIN_COOLOFF_MINUTES="0.5"
    )
    assert s["AXES_FAILURE_LIMIT"] == 3
    assert s["AXES_COOLOFF_TIME"].total_seconds() == 30
    assert settings_with(monkeypatch)["AXES_FAILURE_LIMIT"] == 5


# Run in a fresh process: pytest-django turns DEBUG off in this one whatever the settings say.
ERROR_PAGES = r"""
import json, sys, types
import django
django.setup()
from django.test import Client
from django.test.utils import override_settings
from django.urls import include, path

def boom(request):
    raise RuntimeError("kaboom: a secret detail")

urls = types.ModuleType("boom_urls")
urls.urlpatterns = [path("boom/", boom), path("", include("webapp.urls"))]
sys.modules["boom_urls"] = urls
client = Client(raise_request_exception=False, HTTP_HOST="localhost")
with override_settings(ROOT_URLCONF="boom_urls"):
    not_found = client.get("/no-such-page/")
    error = client.get("/boom/")
    login = client.get("/accounts/login/")
    css = client.get("/static/css/atelier.css")
print(json.dumps({
    "404": [not_found.status_code, not_found.content.decode()],
    "500": [error.status_code, error.content.decode()],
    "login": [login.status_code, login.content.decode()],
    "css": css.status_code,
}))
"""


def test_error_pages_show_no_url_patterns_and_no_traceback_by_default():
    result = subprocess.run(
        [sys.executable, "-c", ERROR_PAGES],
        cwd=ROOT,
        env=clean_env(DJANGO_SETTINGS_MODULE="webapp.settings"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    pages = json.loads(result.stdout.strip().splitlines()[-1])

    status, body = pages["404"]
    assert status == 404
    assert "URL pattern" not in body and "boom/" not in body and "admin/" not in body
    status, body = pages["500"]
    assert status == 500
    assert "Traceback" not in body and "kaboom" not in body and "SECRET_KEY" not in body
    # Pages still render with their CSS and JS without a collectstatic step (make run).
    status, body = pages["login"]
    assert status == 200 and 'href="/static/css/atelier.css"' in body
    assert pages["css"] == 200


# ---------------------------------------------------------------- keys of make run


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_key_file_is_created_private_once_and_reused(tmp_path):
    old_umask = os.umask(0)  # even a permissive umask never exposes it
    try:
        key = read_or_create_key(tmp_path / "var" / "secret-key")
    finally:
        os.umask(old_umask)

    assert len(key) >= 50
    assert mode(tmp_path / "var" / "secret-key") == 0o600
    assert read_or_create_key(tmp_path / "var" / "secret-key") == key
    assert read_or_create_key(tmp_path / "var" / "other-key") != key
    assert not [p for p in (tmp_path / "var").iterdir() if p.name.startswith(".")]


def test_a_too_open_key_file_is_made_private(tmp_path):
    path = tmp_path / "secret-key"
    path.write_text("kept-key\n")
    path.chmod(0o644)

    assert read_or_create_key(path) == "kept-key"
    assert mode(path) == 0o600


def test_make_run_generates_its_keys_in_var_and_hands_them_to_its_children(tmp_path):
    env: dict[str, str] = {}
    RunPlatform()._keys(env, tmp_path, "127.0.0.1")

    secret = tmp_path / "secret-key"
    pseudonyms = tmp_path / "pseudonym-key"
    assert env["DJANGO_SECRET_KEY_FILE"] == str(secret)
    assert env["ATELIER_PSEUDONYM_KEY_FILE"] == str(pseudonyms)
    assert mode(secret) == mode(pseudonyms) == 0o600
    assert secret.read_text() != pseudonyms.read_text()
    assert DEV_KEY not in secret.read_text()

    again: dict[str, str] = {}
    RunPlatform()._keys(again, tmp_path, "127.0.0.1")
    assert again == env
    assert (secret.read_text(), pseudonyms.read_text()) == (
        Path(env["DJANGO_SECRET_KEY_FILE"]).read_text(),
        Path(env["ATELIER_PSEUDONYM_KEY_FILE"]).read_text(),
    )


def test_make_run_keeps_keys_the_environment_brings(tmp_path):
    env = {"DJANGO_SECRET_KEY": "from-the-operator", "ATELIER_PSEUDONYM_KEY_FILE": "/run/k"}
    RunPlatform()._keys(env, tmp_path, "0.0.0.0")

    assert env == {"DJANGO_SECRET_KEY": "from-the-operator", "ATELIER_PSEUDONYM_KEY_FILE": "/run/k"}
    assert not (tmp_path / "secret-key").exists()


def test_the_development_key_is_refused_beyond_loopback(monkeypatch, tmp_path):
    monkeypatch.setenv("DJANGO_SECRET_KEY", DEV_KEY)
    with pytest.raises(CommandError, match="development SECRET_KEY"):
        call_command("runplatform", host="0.0.0.0", no_demo=True)
    with pytest.raises(CommandError, match="development SECRET_KEY"):
        RunPlatform()._keys({"DJANGO_SECRET_KEY": DEV_KEY}, tmp_path, "192.168.1.20")
    for host in ("127.0.0.1", "::1", "localhost", "[::1]"):
        RunPlatform()._keys({"DJANGO_SECRET_KEY": DEV_KEY}, tmp_path, host)  # loopback: allowed
    # make run's own generated key is private: any address may serve with it.
    RunPlatform()._keys({}, tmp_path, "0.0.0.0")


def test_loopback_hosts():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.2", "atelier.lan"))


def test_the_system_check_refuses_the_development_key_beyond_loopback(settings):
    settings.SECRET_KEY = DEV_KEY
    settings.SERVES_BEYOND_LOOPBACK = True
    assert [e.id for e in checks.development_key_stays_on_loopback(None)] == ["atelier.E002"]
    settings.SERVES_BEYOND_LOOPBACK = False
    assert checks.development_key_stays_on_loopback(None) == []
    settings.SECRET_KEY = "a-real-secret"
    settings.SERVES_BEYOND_LOOPBACK = True
    assert checks.development_key_stays_on_loopback(None) == []


def test_manage_py_check_fails_with_the_development_key_beyond_loopback():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean_env(DJANGO_ALLOWED_HOSTS="atelier.example.com"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "atelier.E002" in result.stdout + result.stderr


# ---------------------------------------------------------------- PII pseudonyms


def test_pseudonyms_differ_with_another_pseudonym_key(settings):
    settings.ATELIER_PSEUDONYM_KEY = "first-pseudonym-key"
    first = pseudonym("CN_PHONE", "13812345678", dataset_services.pseudonym_key(1))
    settings.ATELIER_PSEUDONYM_KEY = "second-pseudonym-key"
    second = pseudonym("CN_PHONE", "13812345678", dataset_services.pseudonym_key(1))

    assert first != second


def test_pseudonyms_do_not_depend_on_the_secret_key(settings):
    settings.ATELIER_PSEUDONYM_KEY = "the-pseudonym-key"
    settings.SECRET_KEY = "one-secret-key"
    before = dataset_services.pseudonym_key(7)
    settings.SECRET_KEY = "another-secret-key"

    assert dataset_services.pseudonym_key(7) == before


def test_without_a_pseudonym_key_production_refuses_to_pseudonymise(settings):
    settings.ATELIER_PSEUDONYM_KEY = ""
    settings.SECRET_KEY = "a-real-production-secret"

    with pytest.raises(ImproperlyConfigured, match="ATELIER_PSEUDONYM_KEY"):
        dataset_services.pseudonym_key(1)


def test_development_without_a_pseudonym_key_keeps_a_private_one_in_var(settings, tmp_path):
    settings.ATELIER_PSEUDONYM_KEY = ""
    settings.SECRET_KEY = settings.DEV_SECRET_KEY
    settings.VAR_DIR = tmp_path
    key = dataset_services.pseudonym_key(1)

    assert mode(tmp_path / "pseudonym-key") == 0o600
    assert dataset_services.pseudonym_key(1) == key
    settings.SECRET_KEY = "something else"
    settings.ATELIER_PSEUDONYM_KEY = (tmp_path / "pseudonym-key").read_text().strip()
    assert dataset_services.pseudonym_key(1) == key  # what make run's children use


def test_the_deploy_check_refuses_a_missing_or_shared_pseudonym_key(settings):
    settings.ATELIER_PSEUDONYM_KEY = ""
    assert [e.id for e in checks.pseudonym_key_is_set(None)] == ["atelier.E003"]
    settings.SECRET_KEY = settings.ATELIER_PSEUDONYM_KEY = "same-key"
    assert [e.id for e in checks.pseudonym_key_is_set(None)] == ["atelier.E004"]
    settings.ATELIER_PSEUDONYM_KEY = "a-key-of-its-own"
    assert checks.pseudonym_key_is_set(None) == []
