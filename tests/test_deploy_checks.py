"""Production settings: `manage.py check --deploy` passes with the documented environment."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION_ENV = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "ATELIER_PSEUDONYM_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "atelier.example.com",
    "DATABASE_URL": "postgres://atelier:secret@postgres:5432/atelier",
    "REDIS_URL": "redis://redis:6379/0",
    # Read by the CPU worker only: the web process checks that both are named.
    "ATELIER_C2PA_CERT_FILE": "/run/secrets/c2pa_chain.pem",
    "ATELIER_C2PA_KEY_FILE": "/run/secrets/c2pa_signer.key",
}


def run_check(env_overrides: dict[str, str]) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "ATELIER_PSEUDONYM_KEY", "ATELIER_C2PA_"))
    }
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_production_environment():
    result = run_check(PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_refuses_the_development_secret_key():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "DJANGO_SECRET_KEY"}
    result = run_check(env)
    assert result.returncode != 0
    assert "atelier.E001" in result.stdout + result.stderr


def test_check_deploy_warns_about_sqlite_in_production():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "DATABASE_URL"}
    result = run_check(env)
    assert result.returncode != 0
    assert "atelier.W002" in result.stdout + result.stderr


def test_check_deploy_warns_about_the_development_c2pa_ca():
    env = {k: v for k, v in PRODUCTION_ENV.items() if not k.startswith("ATELIER_C2PA_")}
    result = run_check(env)
    assert result.returncode != 0
    assert "atelier.W003" in result.stdout + result.stderr


def test_secret_key_can_come_from_a_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(secrets.token_urlsafe(50) + "\n")
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "DJANGO_SECRET_KEY"}
    env["DJANGO_SECRET_KEY_FILE"] = str(key_file)
    result = run_check(env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_refuses_a_missing_pseudonym_key():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "ATELIER_PSEUDONYM_KEY"}
    result = run_check(env)
    assert result.returncode != 0
    assert "atelier.E003" in result.stdout + result.stderr


def test_pseudonym_key_can_come_from_a_file(tmp_path):
    key_file = tmp_path / "pseudonym-key"
    key_file.write_text(secrets.token_urlsafe(50) + "\n")
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "ATELIER_PSEUDONYM_KEY"}
    env["ATELIER_PSEUDONYM_KEY_FILE"] = str(key_file)
    result = run_check(env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_without_debug_is_https_only():
    """The production environment gets the HTTPS-only settings without asking for them."""
    env = {**PRODUCTION_ENV, "DJANGO_SETTINGS_MODULE": "webapp.settings"}
    code = (
        "from django.conf import settings as s; "
        "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_HSTS_SECONDS)"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.split() == ["False", "True", "True", "True", "31536000"], result.stderr
