"""Shared fixtures: a real Redis for the whole run, personas, and real platform processes."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.harness import Processes, database_url_for, redis_answers, start_embedded_redis

ROOT = Path(__file__).resolve().parent.parent
# One folder per test run: runs side by side (two checkouts, a developer and a helper) must not
# delete each other's job folders or media.
TEST_VAR = ROOT / "var" / "test" / str(os.getpid())
# Models the tests prepare (the digits demo takes minutes to train, SmolLM2 ~30 s to convert) go
# to a folder of the tests' own, kept between runs, never the var/models that `make run` uses:
# a new user's first `make run` then shows the first-use preparation the tests would have hidden.
# Each builder takes a file lock beside its folder, so xdist's processes never build one twice.
TEST_MODELS = Path(os.environ.get("ATELIER_TEST_MODELS_DIR") or ROOT / ".pytest-models")
# Compiled pattern databases (the PII triggers take 5-7 s to compile) are shared by every test
# process and kept between runs, like a deployment's var/cache; the per-run TEST_VAR would make
# each xdist process compile them again.
os.environ["ATELIER_CACHE_DIR"] = str(ROOT / "var" / "test-cache")

# Fast engine timings for tests; subprocesses inherit them through the environment.
ENGINE_ENV = {
    "ATELIER_LEASE_SECONDS": "6",
    "ATELIER_HEARTBEAT_SECONDS": "0.5",
    "ATELIER_DISPATCH_INTERVAL": "0.5",
    "ATELIER_REDISPATCH_AFTER": "5",
    "ATELIER_EVENT_MIN_INTERVAL": "0.1",
    "ATELIER_WS_RESYNC_SECONDS": "1.0",
    "ATELIER_JOB_KIND_MODULES": "tests.jobkinds",
    "ATELIER_CHANNEL_PREFIX": f"atelier-test-{os.getpid()}",
    # The API's per-minute limit counts in Redis by user and token id, and ids repeat from test to
    # test (rolled back): hundreds of matrix requests a minute would trip it. Off by default here;
    # tests/services/test_api_tokens.py turns it on to test it.
    "ATELIER_API_RATE_PER_MINUTE": "0",
}
_redis_proc = None


def pytest_configure(config):
    """Point the already-loaded settings (and every child process) at a real Redis."""
    global _redis_proc
    from django.conf import settings

    url = os.environ.get("REDIS_URL", "")
    if not url or not redis_answers(url):
        _redis_proc, url = start_embedded_redis(TEST_VAR / "redis")
    url = _redis_db_for_this_worker(url)
    os.environ["REDIS_URL"] = url
    os.environ.update(ENGINE_ENV)
    os.environ["ATELIER_MEDIA_ROOT"] = str(TEST_VAR / "media")
    os.environ["ATELIER_JOBS_DIR"] = str(TEST_VAR / "jobs")
    os.environ["ATELIER_MODELS_DIR"] = str(TEST_MODELS)
    settings.REDIS_URL = url
    settings.CELERY_BROKER_URL = url
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [
        {"address": url, "socket_timeout": None}
    ]
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = ENGINE_ENV["ATELIER_CHANNEL_PREFIX"]
    # Jobs run in this process hand their helper threads back at once: an idle helper would hold
    # a connection to the test database past its teardown. Worker subprocesses keep theirs.
    settings.ATELIER["HELPER_IDLE_SECONDS"] = 0
    os.environ["ATELIER_VAR_DIR"] = str(TEST_VAR)
    settings.VAR_DIR = TEST_VAR
    settings.MEDIA_ROOT = TEST_VAR / "media"
    settings.JOBS_DIR = TEST_VAR / "jobs"
    settings.MODELS_DIR = TEST_MODELS
    settings.ATELIER.update(
        LEASE_SECONDS=6.0,
        HEARTBEAT_SECONDS=0.5,
        DISPATCH_INTERVAL=0.5,
        REDISPATCH_AFTER=5.0,
        EVENT_MIN_INTERVAL=0.1,
        WS_RESYNC_SECONDS=1.0,
        API_RATE_PER_MINUTE=0,
    )
    import tests.jobkinds  # noqa: F401  (registers the test-only kinds in this process)
    from webapp.celery import app

    app.conf.broker_url = url


def _redis_db_for_this_worker(url: str) -> str:
    """Under pytest-xdist each worker gets its own Redis database (the run's database + 1 + the
    worker's number), as pytest-django gives it its own SQL database: Celery queues, doorbells and
    the tests that wipe Redis stay within one worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{base + 1 + int(worker[2:])}"))


# The files that take longest, in the order xdist should start them (measured with
# `--durations`, 2026-12-07: seconds of one process each). `make test` runs xdist with
# `--dist loadfile --no-loadscope-reorder`: whole files go to a process in collection order, and
# xdist's default reorder (files with the most tests first) would leave these few-but-long files
# for the end, where one process runs them while the other has nothing left to do. Started first,
# they run beside the thousands of short tests instead. test_demo_model trains the digits demo
# model that test_image_lora_training (third here: the same process's next file) and the image
# tests use, so nobody waits for it.
LONGEST_FIRST = (
    "tests/imaging/test_demo_model.py",  # ~150 s: trains the digits demo once into .pytest-models
    "tests/integration/test_finetune_live.py",  # ~200 s: kill -9 of every platform process
    "tests/imaging/test_image_lora_training.py",  # ~180 s
    "tests/test_authorization.py",  # ~135 s: 1,288 cells
    "tests/services/test_image_assets.py",
    "tests/integration/test_openai_generation_live.py",
    "tests/integration/test_reliability.py",
    "tests/integration/test_provenance_chain.py",
    "tests/ml/test_finetune.py",
    "tests/integration/test_live_jobs.py",
    "tests/integration/test_import_job_live.py",
    "tests/browser/test_phone_width.py",
    "tests/ml/test_models.py",
    "tests/browser/test_zh_live_pages.py",
)


def pytest_collection_modifyitems(config, items):
    """Longest files first (LONGEST_FIRST), the rest in their usual order; a file's own tests
    keep theirs."""
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    position = {id(item): i for i, item in enumerate(items)}

    def key(item):
        path = item.nodeid.split("::", 1)[0]
        return (rank.get(path, len(rank)), position[id(item)])

    items.sort(key=key)


def pytest_unconfigure(config):
    if _redis_proc is not None:
        _redis_proc.kill()
    shutil.rmtree(TEST_VAR, ignore_errors=True)


# The interpreter's recursion limit as the run starts: py-evm (under eth-tester, in the chain
# tests) raises it to 100,000 on import, and a test of deeply nested input that ran after them
# would then overflow the C stack instead of seeing RecursionError. The product keeps it
# (apps/provenance/apps.py); the tests put it back before each test.
RECURSION_LIMIT = sys.getrecursionlimit()


@pytest.fixture(autouse=True)
def _recursion_limit():
    sys.setrecursionlimit(RECURSION_LIMIT)


@pytest.fixture(autouse=True)
def _clean_job_dirs():
    yield
    shutil.rmtree(TEST_VAR / "jobs", ignore_errors=True)


# ---------------------------------------------------------------- personas

PERSONAS = ("admin", "member", "reviewer", "viewer")


_HASHES: dict[str, str] = {}


@pytest.fixture
def make_user(django_user_model):
    """Users with password 'pw-<username>'. Each hash is computed once per run: PBKDF2 takes
    ~0.3 s, and the real hasher must stay (web subprocesses check these passwords)."""
    from django.contrib.auth.hashers import make_password

    def make(username: str, **extra):
        password = "pw-" + username
        if password not in _HASHES:
            _HASHES[password] = make_password(password)
        user = django_user_model.objects.create_user(username=username, password=None, **extra)
        user.password = _HASHES[password]
        user.save(update_fields=["password"])
        return user

    return make


@pytest.fixture
def project(db):
    from apps.projects.models import Project

    return Project.objects.create(name="Clinic QA", description="persona project")


@pytest.fixture
def people(project, make_user):
    """One user per role in `project`, plus an outsider with no membership."""
    from apps.projects.models import Membership

    users = {}
    for role in PERSONAS:
        users[role] = make_user(role)
        Membership.objects.create(project=project, user=users[role], role=role)
    users["outsider"] = make_user("outsider")
    return users


@pytest.fixture
def member(people):
    return people["member"]


# ---------------------------------------------------------------- real processes


@pytest.fixture
def processes(transactional_db, tmp_path):
    """Start/stop real worker, web and scheduler processes against the test database."""
    from django.db import connection

    env = {"DATABASE_URL": database_url_for(connection.settings_dict)}
    procs = Processes(env=env, log_dir=tmp_path / "logs")
    yield procs
    procs.stop_all()
