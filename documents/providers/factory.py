"""Build the configured embedding provider from Django settings, once per process.

Settings are read and validated in embedding_site/settings.py; this module only turns them
into objects, and refuses combinations whose vectors could differ:

* the provider's dimensions must equal ``EMBEDDING_DIMENSIONS`` (the column's size);
* a fallback must have the primary's ``model_id`` and dimensions. Vectors from two different
  models live in unrelated spaces: cosine similarity between them means nothing, so a search
  over a column that mixes them returns confident nonsense, and nothing in the data says which
  rows are affected. So a mismatch stops start-up instead (``check_provider_settings`` runs in
  ``DocumentsConfig.ready``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .base import EmbeddingProvider
from .fallback import FallbackEmbeddingProvider
from .http import HttpOptions


@dataclass(frozen=True)
class ProviderSettings:
    """One provider's share of the settings (the primary's, or the fallback's)."""

    name: str  # local, openai, tei
    setting: str  # the variable that chose it, for messages
    model: str = ""
    base_url: str = ""
    api_key: str = field(default="", repr=False)  # dataclass reprs end up in logs


@functools.cache
def get_provider() -> EmbeddingProvider:
    """The provider every worker and search in this process uses (built once, no I/O)."""
    primary = build_provider(_settings_for("EMBEDDING"))
    _check_dimensions(primary, "EMBEDDING_PROVIDER")
    fallback_settings = _settings_for("EMBEDDING_FALLBACK")
    if fallback_settings is None:
        return primary
    fallback = build_provider(fallback_settings)
    check_same_vectors(primary, fallback)
    return FallbackEmbeddingProvider(primary, fallback)


@functools.cache
def get_previous_provider() -> EmbeddingProvider | None:
    """The provider of the model being replaced (EMBEDDING_PREVIOUS_*), for search during a
    model change; None when not configured."""
    previous_settings = _settings_for("EMBEDDING_PREVIOUS")
    if previous_settings is None:
        return None
    previous = build_provider(previous_settings)
    _check_dimensions(previous, "EMBEDDING_PREVIOUS_PROVIDER")
    return previous


def check_provider_settings() -> None:
    """Fail start-up on a provider set-up that would mix vectors; called from AppConfig.ready.

    Only needed with a fallback or an HTTP provider; the default (local, alone) is checked on
    first use, so that start-up does not import the local model's packages.
    """
    if settings.EMBEDDING_FALLBACK_PROVIDER or settings.EMBEDDING_PROVIDER != "local":
        get_provider()


def build_provider(config: ProviderSettings) -> EmbeddingProvider:
    if config.name == "local":
        try:
            from documents.providers.local import LocalEmbeddingProvider
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"{config.setting}=local, but the local model cannot be imported ({exc}). Install the "
                "project's dependencies (make install), or choose openai or tei."
            ) from exc
        return LocalEmbeddingProvider(intra_op_threads=settings.EMBEDDING_LOCAL_THREADS)
    options = HttpOptions(
        timeout_seconds=settings.EMBEDDING_TIMEOUT_SECONDS,
        max_attempts=settings.EMBEDDING_HTTP_ATTEMPTS,
        max_retry_wait_seconds=settings.EMBEDDING_HTTP_MAX_RETRY_WAIT_SECONDS,
    )
    limits = {
        name: value
        for name, value in (
            ("max_batch_size", settings.EMBEDDING_BATCH_SIZE),
            ("max_input_tokens", settings.EMBEDDING_MAX_INPUT_TOKENS),
        )
        if value is not None
    }
    if config.name == "openai":
        from .openai import OpenAIEmbeddingProvider

        return OpenAIEmbeddingProvider(
            config.base_url,
            config.api_key or None,
            config.model,
            settings.EMBEDDING_DIMENSIONS,
            send_dimensions=settings.EMBEDDING_SEND_DIMENSIONS,
            http_options=options,
            **limits,
        )
    if config.name == "tei":
        from .tei import TEIEmbeddingProvider

        return TEIEmbeddingProvider(
            config.base_url,
            config.model,
            settings.EMBEDDING_DIMENSIONS,
            api_key=config.api_key or None,
            http_options=options,
            **limits,
        )
    raise ImproperlyConfigured(
        f"{config.setting}={config.name!r} is not a provider; use local, openai or tei."
    )


def check_same_vectors(primary: EmbeddingProvider, fallback: EmbeddingProvider) -> None:
    """Refuse a fallback whose vectors would not be interchangeable with the primary's."""
    if (primary.model_id, primary.dimensions) == (fallback.model_id, fallback.dimensions):
        return
    raise ImproperlyConfigured(
        f"The fallback embedding provider makes {fallback.model_id!r} vectors of {fallback.dimensions} "
        f"dimensions, but the primary makes {primary.model_id!r} vectors of {primary.dimensions}. A fallback "
        "must serve the same model: vectors from different models must never mix in one column, because "
        "similarity between them is meaningless and search would silently return wrong results. Point "
        "EMBEDDING_FALLBACK_* at another server of the same model (same EMBEDDING_FALLBACK_MODEL, same "
        "EMBEDDING_SEND_DIMENSIONS), or unset EMBEDDING_FALLBACK_PROVIDER."
    )


def _check_dimensions(provider: EmbeddingProvider, setting: str) -> None:
    if provider.dimensions != settings.EMBEDDING_DIMENSIONS:
        raise ImproperlyConfigured(
            f"{setting} makes {provider.dimensions}-dimensional vectors ({provider.model_id}), but the "
            f"column holds EMBEDDING_DIMENSIONS={settings.EMBEDDING_DIMENSIONS}. Choose a provider of that "
            "size, or change EMBEDDING_DIMENSIONS (a schema change: it needs a migration and a re-embed)."
        )


def _settings_for(prefix: str) -> ProviderSettings | None:
    """The provider named by `{prefix}_PROVIDER` and its `_MODEL`, `_BASE_URL`, `_API_KEY`
    settings; None when that provider is not set."""
    name = getattr(settings, f"{prefix}_PROVIDER")
    if not name:
        return None
    return ProviderSettings(
        name=name,
        setting=f"{prefix}_PROVIDER",
        model=getattr(settings, f"{prefix}_MODEL"),
        base_url=getattr(settings, f"{prefix}_BASE_URL"),
        api_key=getattr(settings, f"{prefix}_API_KEY"),
    )
