# Production image: gunicorn for the web process; the same image runs `manage.py qcluster`.
# DATABASE_URL (PostgreSQL >= 15 with pgvector >= 0.7) and SECRET_KEY are required.
FROM python:3.11-slim AS build
WORKDIR /app
RUN python -m venv /venv
COPY pyproject.toml README.md ./
COPY embedding_site embedding_site
COPY documents documents
COPY queue_admin queue_admin
RUN /venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --create-home --uid 10001 sidecar
WORKDIR /app
COPY --from=build /venv /venv
COPY --chown=sidecar:sidecar . .
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 DEBUG=0
RUN DATABASE_URL=postgres://build@localhost/build SECRET_KEY=build-only ALLOWED_HOSTS=build \
    python manage.py collectstatic --no-input -v 0
USER sidecar
EXPOSE 8000
# DATABASE_URL must be given at run time; settings refuse to start without SECRET_KEY.
CMD ["gunicorn", "embedding_site.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
