import json
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("django", "celery", "channels", "apps", "webapp")

# Runs in a fresh interpreter: the test process itself may already have Django loaded.
PROBE = """
import importlib, json, pkgutil, sys

imported, errors = [], {}
for package_name in ("workers.ml", "workers.chain"):
    try:
        package = importlib.import_module(package_name)
    except ModuleNotFoundError as exc:
        if exc.name in ("workers.chain",):
            continue
        raise
    imported.append(package_name)
    def onerror(name):
        errors[name] = repr(sys.exc_info()[1])
    for info in pkgutil.walk_packages(package.__path__, package_name + ".", onerror=onerror):
        try:
            importlib.import_module(info.name)
            imported.append(info.name)
        except Exception as exc:
            errors[info.name] = repr(exc)

forbidden = %r
leaked = sorted(
    name for name in sys.modules
    if any(name == f or name.startswith(f + ".") for f in forbidden)
)
print(json.dumps({"imported": imported, "errors": errors, "leaked": leaked}))
"""


def _probe() -> dict:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", PROBE % (FORBIDDEN,)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_pure_packages_import_without_django_celery_channels_or_the_apps():
    report = _probe()

    assert report["errors"] == {}
    assert "workers.ml.reporting" in report["imported"]
    assert "workers.ml.checkpoints" in report["imported"]
    assert report["leaked"] == [], f"pure code imported {report['leaked']}"
