"""Atelier settings: everything comes from the environment, with safe development defaults.

Every variable is documented in README.md and .env.example.
"""

from __future__ import annotations

import os
import re
import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    """A setting from the environment, or from the file named by NAME_FILE (docker secrets)."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text().strip()
    return os.environ.get(name, default)


def envbool(name: str, default: bool = False) -> bool:
    return env(name, "1" if default else "0").strip().lower() in {"1", "true", "yes", "on"}


def envint(name: str, default: int) -> int:
    return int(env(name, str(default)))


def envfloat(name: str, default: float) -> float:
    return float(env(name, str(default)))


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


# Offline by default: nothing here may download weights at run time (DESIGN.md, "Models").
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")

VAR_DIR = Path(env("ATELIER_VAR_DIR", str(BASE_DIR / "var")))
# Off unless asked for: DEBUG pages list every URL pattern and show settings in tracebacks.
DEBUG = envbool("DJANGO_DEBUG", False)
# The public development key: `make run` replaces it with a key of its own kept in var/
# (runplatform), and checks.py refuses it in production and beyond loopback.
DEV_SECRET_KEY = "django-insecure-atelier-development-key-change-me"
SECRET_KEY = env("DJANGO_SECRET_KEY", DEV_SECRET_KEY)
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}
# Served under a name other than loopback: reachable from other machines.
SERVES_BEYOND_LOOPBACK = any(
    host.lower() not in LOOPBACK_HOSTS and not host.lower().endswith(".localhost")
    for host in ALLOWED_HOSTS
)
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "channels",
    # django-ninja's bundled Swagger UI (offline) for /api/v1/docs
    "ninja",
    "apps.core",
    "apps.accounts",
    "apps.audit",
    "apps.projects",
    "apps.jobs",
    "apps.datasets",
    "apps.models",
    "apps.outputs",
    "apps.moderation",
    "apps.review",
    "apps.finetunes",
    "apps.craft",
    "apps.playground",
    "apps.galleries",
    "apps.images",
    "apps.api",
    "apps.quotas",
    "apps.provenance",
    "apps.webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as axes asks: turns a locked-out login into the lockout page (apps/accounts/lockout.py).
    "axes.middleware.AxesMiddleware",
]
# Under ASGI the chain runs as sync code in one thread crossing: webapp/handlers.py.

ROOT_URLCONF = "webapp.urls"
ASGI_APPLICATION = "webapp.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "apps.review.context_processors.review_badge",
            ],
        },
    },
]

# SQLite under var/ by default; DATABASE_URL switches to PostgreSQL.
# SQLite is shared by the web server, three workers and the scheduler: WAL lets readers run
# beside the one writer, IMMEDIATE transactions avoid upgrade deadlocks, and the timeout waits
# for the write lock instead of failing with "database is locked".
DATABASE_URL = env("DATABASE_URL")
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL)
    if DATABASE_URL
    else {"ENGINE": "django.db.backends.sqlite3", "NAME": VAR_DIR / "atelier.sqlite3"}
}
# Django's backends, keeping a process's idle connections for its next request or task
# (webapp/db/reuse.py): under ASGI, CONN_MAX_AGE keeps nothing (a request's connection belongs
# to its context), so it stays 0 and every request gives its connection back instead.
DATABASES["default"]["ENGINE"] = {
    "django.db.backends.sqlite3": "webapp.db.sqlite3",
    "django.db.backends.postgresql": "webapp.db.postgresql",
}.get(DATABASES["default"]["ENGINE"], DATABASES["default"]["ENGINE"])
DATABASES["default"]["CONN_MAX_AGE"] = 0
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests run workers in other processes: they must share a file, not :memory:.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Login throttling (django-axes): the lockout check comes first, then the usual password check.
AUTHENTICATION_BACKENDS = [
    "apps.accounts.backends.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# N failures for one username (from anywhere) OR from one address (any usernames) lock that
# username or address out until the cool-off has passed since its last failure.
AXES_FAILURE_LIMIT = envint("ATELIER_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envfloat("ATELIER_LOGIN_COOLOFF_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# The address the audit log records: REMOTE_ADDR, which uvicorn sets from X-Forwarded-For only
# for the proxies named in FORWARDED_ALLOW_IPS (--proxy-headers). Never a header a client sends.
AXES_CLIENT_IP_CALLABLE = "apps.audit.services.client_ip"
AXES_LOCKOUT_CALLABLE = "apps.accounts.lockout.lockout_response"
# Axes' own reset on success clears every failure of the user's address too, so an attacker
# could log in to their own account between guesses at someone else's. apps/accounts clears only
# the failures of the username and address that just proved the password.
AXES_RESET_ON_SUCCESS = False
# Logins are in the audit log already (apps/accounts/receivers.py).
AXES_DISABLE_ACCESS_LOG = True
# No "AXES: BEGIN" banner from every manage.py command, worker and test process.
AXES_VERBOSE = False
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "projects:list"
LOGOUT_REDIRECT_URL = "accounts:login"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env("TZ", "UTC") or "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env("ATELIER_MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names once collectstatic ran (production), plain names otherwise (webapp/staticfiles.py).
    "staticfiles": {"BACKEND": "webapp.staticfiles.StaticFilesStorage"},
}
# Serve straight from static/ as well, so `make run` and the tests need no collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
# Until collectstatic has run (never, under make run and the tests) STATIC_ROOT does not exist.
warnings.filterwarnings("ignore", message=f"No directory at: {re.escape(str(STATIC_ROOT))}")

# Redis: Celery broker and channel layer. Empty means "start an embedded one" (make run) —
# the runner sets REDIS_URL for its children.
REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNEL_LAYERS = {
    "default": {
        # Redis pub/sub: a doorbell is one PUBLISH (0.2 ms of CPU against 0.75 ms for the
        # list-based layer's group_send with its Lua script and expiry bookkeeping). Doorbells
        # may be lost either way (the database is the truth: gaps are read from it, a silent
        # socket resyncs), so the list layer's buffering bought nothing here.
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            # socket_timeout=None: with redis-py 8 the default timeout kills idle websockets
            # after ~5 s (STACK-NOTES).
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": env("ATELIER_CHANNEL_PREFIX", "atelier"),
        },
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}

# Job engine (apps/jobs). Seconds unless named otherwise.
ATELIER = {
    "LEASE_SECONDS": envfloat("ATELIER_LEASE_SECONDS", 30.0),
    "HEARTBEAT_SECONDS": envfloat("ATELIER_HEARTBEAT_SECONDS", 5.0),
    # A job's helper threads (events writer, heartbeat) wait this long for the next job, keeping
    # their database connections (workers/tasks/threads.py); 0: a thread per job, as in tests.
    "HELPER_IDLE_SECONDS": envfloat("ATELIER_HELPER_IDLE_SECONDS", 60.0),
    "DISPATCH_INTERVAL": envfloat("ATELIER_DISPATCH_INTERVAL", 2.0),
    # A queued job whose message was sent this long ago without a claim is sent again.
    "REDISPATCH_AFTER": envfloat("ATELIER_REDISPATCH_AFTER", 15.0),
    "EVENT_MIN_INTERVAL": envfloat("ATELIER_EVENT_MIN_INTERVAL", 0.25),
    # An idle websocket re-joins its groups and checks the database this often, so a doorbell
    # lost with Redis's data (FLUSHALL, a restart without persistence) delays a client at most
    # this long.
    "WS_RESYNC_SECONDS": envfloat("ATELIER_WS_RESYNC_SECONDS", 3.0),
    "PROJECT_MAX_CONCURRENT_JOBS": envint("ATELIER_PROJECT_MAX_CONCURRENT_JOBS", 2),
    "MAX_ATTEMPTS": envint("ATELIER_MAX_ATTEMPTS", 5),
    # A worker that starts a batchable job (image generation) also claims up to this many more
    # queued, already dispatched jobs with the same batch key and runs them in one pipeline call.
    "BATCH_MAX_JOBS": envint("ATELIER_BATCH_MAX_JOBS", 8),
    # Extra modules that register job kinds (tests add their own test-only kind here).
    "JOB_KIND_MODULES": envlist("ATELIER_JOB_KIND_MODULES"),
    # Moderation classifiers a deployment installs (dotted paths to fn(kind=, text=, image_path=)
    # -> hits); none by default (apps/moderation/services.py).
    "MODERATION_CLASSIFIERS": envlist("ATELIER_MODERATION_CLASSIFIERS"),
    # Webhook receivers on private/loopback/link-local addresses (apps/webhooks): development
    # and tests only; refused by default (SSRF).
    "WEBHOOKS_ALLOW_PRIVATE": envbool("ATELIER_WEBHOOKS_ALLOW_PRIVATE", False),
    # API requests a minute per token, and per signed-in user calling the API from a browser
    # session (apps/api/ratelimit.py); past it 429 with Retry-After. 0: no limit.
    "API_RATE_PER_MINUTE": envint("ATELIER_API_RATE_PER_MINUTE", 600),
    # The address users and other machines reach this Atelier at (https://atelier.example.com):
    # webhook payloads and the API's image links are absolute with it. Empty: API answers use
    # the request's own host, webhook payloads carry paths (webapp/public_url.absolute_url).
    "PUBLIC_URL": env("ATELIER_PUBLIC_URL", "").rstrip("/"),
    # How long a signed image link (/v1/images response_format "url") works, as OpenAI's do.
    "SIGNED_LINK_SECONDS": envint("ATELIER_SIGNED_LINK_SECONDS", 3600),
}
# Per-job folders (checkpoints): must be shared by all workers so a re-queued job resumes anywhere.
JOBS_DIR = Path(env("ATELIER_JOBS_DIR", str(VAR_DIR / "jobs")))
# Prepared model folders (built-in models are converted or built here on first use).
MODELS_DIR = Path(env("ATELIER_MODELS_DIR", str(VAR_DIR / "models")))

CHAIN_RPC_URL = env("CHAIN_RPC_URL")
# Provenance on-chain (apps/provenance; bounds in apps/provenance/conf.py). The chain the
# registry is deployed on (anvil's 31337 by default), and how approved outputs' hashes go there.
CHAIN_ID = envint("CHAIN_ID", 31337)
CHAIN = {
    # A batch closes when this many hashes wait (at most 100,000), or when the oldest has waited
    # BATCH_AGE_SECONDS; one transaction records its Merkle root.
    "BATCH_SIZE": envint("ATELIER_CHAIN_BATCH_SIZE", 1000),
    "BATCH_AGE_SECONDS": envfloat("ATELIER_CHAIN_BATCH_AGE_SECONDS", 60.0),
    # Blocks on top of the transaction's block before its records are final.
    "CONFIRMATIONS": envint("ATELIER_CHAIN_CONFIRMATIONS", 3),
    # A transaction without a receipt this long is replaced (same nonce, higher fees).
    "REPLACE_AFTER_SECONDS": envfloat("ATELIER_CHAIN_REPLACE_AFTER_SECONDS", 60.0),
    # How often the signer polls the node, and the scheduler runs the batcher.
    "POLL_SECONDS": envfloat("ATELIER_CHAIN_POLL_SECONDS", 0.5),
    "BATCHER_EVERY_SECONDS": envfloat("ATELIER_CHAIN_BATCHER_SECONDS", 5.0),
}
# A block explorer's transaction page, e.g. "https://etherscan.io/tx/{tx_hash}"; empty: no link.
CHAIN_EXPLORER_TX_URL = env("CHAIN_EXPLORER_TX_URL")
# C2PA Content Credentials on recorded images (apps/provenance/credentials.py): the signer's PEM
# certificate chain (leaf first) and its PEM private key, read by the CPU worker. Unset: a
# development CA made under VAR_DIR/c2pa signs (check --deploy warns).
ATELIER_C2PA_CERT_FILE = env("ATELIER_C2PA_CERT_FILE")
ATELIER_C2PA_KEY_FILE = env("ATELIER_C2PA_KEY_FILE")
# Keys the consistent pseudonyms of PII redaction (per project, derived). Never SECRET_KEY: a
# pseudonym of a phone number is brute-forceable by anyone who knows the key. `make run` keeps one
# in var/pseudonym-key; production must set it (check --deploy refuses it missing).
ATELIER_PSEUDONYM_KEY = env("ATELIER_PSEUDONYM_KEY")
# Largest upload accepted (bytes); the importer enforces its own limits on top.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
ATELIER_MAX_UPLOAD_BYTES = envint("ATELIER_MAX_UPLOAD_BYTES", 2 * 1024**3)
# Every request body is bounded before it is read (webapp/limits.py, around the ASGI app): this
# for every route, ATELIER_MAX_UPLOAD_BYTES only for the upload routes and signed-in uploaders.
ATELIER_MAX_REQUEST_BYTES = envint("ATELIER_MAX_REQUEST_BYTES", 1024 * 1024)
# Address-space cap of the child that converts a GGUF model on first use (bytes); 0: the default,
# max(4 GiB, 4 x the file), so a hostile header cannot take the worker down.
GGUF_CONVERT_MEMORY_BYTES = envint("ATELIER_GGUF_CONVERT_MEMORY_BYTES", 0)

# Security: HTTPS-only cookies, HSTS and the SSL redirect are on when the site is served under a
# name beyond loopback (production), off on loopback (`make run` on http://127.0.0.1); DEBUG does
# not decide it. DJANGO_HTTPS=1/0 decides explicitly (e.g. 0 for plain HTTP on a LAN).
HTTPS = envbool("DJANGO_HTTPS", SERVES_BEYOND_LOOPBACK)
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy (django-csp): pages have no inline scripts or style attributes; live
# previews are data: URLs; the live pages talk over websockets.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'", "ws:", "wss:"],
        "frame-ancestors": ["'none'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
    }
}
if HTTPS:
    SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", True)
    # The liveness probe is called over plain HTTP inside the container network (compose).
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = envbool("DJANGO_HSTS_PRELOAD", False)
    SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"forbidden_one_line": {"()": "webapp.logfilters.ForbiddenOnOneLine"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["forbidden_one_line"],
        }
    },
    "root": {"handlers": ["console"], "level": env("ATELIER_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        # Failures and lockouts are warnings; every successful login is in the audit log.
        "axes": {"level": "WARNING"},
    },
}
