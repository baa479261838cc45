"""Choosing a provider from settings: what gets built, which fallbacks are refused, and how bad
settings stop start-up (``manage.py check`` in a subprocess, as an operator would see it)."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from documents.providers import factory
from documents.providers.base import EmbeddingError
from documents.providers.fallback import FallbackEmbeddingProvider
from documents.providers.http import close_shared_clients
from documents.providers.openai import OpenAIEmbeddingProvider
from documents.providers.tei import TEIEmbeddingProvider
from tests.fault_server import Fault, fake_vector
from tests.helpers import ROOT

API_KEY = "sk-test-SECRET-factory-41b7"
DIMS = 8


@pytest.fixture
def embedding_settings(settings):
    """Settings for an HTTP provider of 8 dimensions, with no fallback; get_provider rebuilt."""
    settings.EMBEDDING_DIMENSIONS = DIMS
    settings.EMBEDDING_PROVIDER = "openai"
    settings.EMBEDDING_MODEL = "fake-embedder-model"
    settings.EMBEDDING_BASE_URL = "http://127.0.0.1:9/v1"
    settings.EMBEDDING_API_KEY = API_KEY
    settings.EMBEDDING_SEND_DIMENSIONS = False
    settings.EMBEDDING_BATCH_SIZE = None
    settings.EMBEDDING_MAX_INPUT_TOKENS = None
    settings.EMBEDDING_TIMEOUT_SECONDS = 2
    settings.EMBEDDING_HTTP_MAX_RETRY_WAIT_SECONDS = 0.01
    settings.EMBEDDING_FALLBACK_PROVIDER = ""
    settings.EMBEDDING_FALLBACK_MODEL = "fake-embedder-model"
    settings.EMBEDDING_FALLBACK_BASE_URL = ""
    settings.EMBEDDING_FALLBACK_API_KEY = ""
    factory.get_provider.cache_clear()
    yield settings
    factory.get_provider.cache_clear()
    close_shared_clients()


def test_openai_is_built_from_settings_and_cached(embedding_settings):
    embedding_settings.EMBEDDING_SEND_DIMENSIONS = True
    embedding_settings.EMBEDDING_BATCH_SIZE = 50
    provider = factory.get_provider()
    assert isinstance(provider, OpenAIEmbeddingProvider)
    assert (provider.model_id, provider.dimensions, provider.max_batch_size) == (
        "fake-embedder-model@8d",
        8,
        50,
    )
    assert provider.max_input_tokens == 8191
    assert provider.http.options.timeout_seconds == 2 and provider.http.options.max_attempts == 3
    assert factory.get_provider() is provider


def test_tei_is_built_from_settings(embedding_settings):
    embedding_settings.EMBEDDING_PROVIDER = "tei"
    embedding_settings.EMBEDDING_MAX_INPUT_TOKENS = 256
    provider = factory.get_provider()
    assert isinstance(provider, TEIEmbeddingProvider)
    assert (provider.model_id, provider.max_batch_size, provider.max_input_tokens) == (
        "fake-embedder-model",
        32,
        256,
    )


def test_local_is_the_default_and_must_match_the_column(embedding_settings):
    pytest.importorskip("documents.providers.local", reason="the local model lives on another branch")
    embedding_settings.EMBEDDING_PROVIDER = "local"
    embedding_settings.EMBEDDING_DIMENSIONS = 384
    assert factory.get_provider().dimensions == 384
    factory.get_provider.cache_clear()
    embedding_settings.EMBEDDING_DIMENSIONS = DIMS
    with pytest.raises(ImproperlyConfigured, match="column holds EMBEDDING_DIMENSIONS=8"):
        factory.get_provider()


def test_a_fallback_serving_the_same_model_takes_over_when_the_primary_is_down(
    embedding_settings, fake_embedder, refused_url
):
    embedding_settings.EMBEDDING_BASE_URL = refused_url + "/v1"  # nothing listens there
    embedding_settings.EMBEDDING_FALLBACK_PROVIDER = "openai"
    embedding_settings.EMBEDDING_FALLBACK_BASE_URL = fake_embedder.openai_url
    provider = factory.get_provider()
    assert isinstance(provider, FallbackEmbeddingProvider) and provider.model_id == "fake-embedder-model"

    result = provider.embed(["hello"])

    np.testing.assert_allclose(result.vectors[0], fake_vector("hello", DIMS), rtol=1e-6)
    # The primary's key is not sent to the fallback's host.
    assert "Authorization" not in fake_embedder.requests[0].headers


def test_a_permanent_primary_error_is_not_hidden_by_the_fallback(embedding_settings, fake_embedder):
    embedding_settings.EMBEDDING_BASE_URL = fake_embedder.openai_url
    embedding_settings.EMBEDDING_FALLBACK_PROVIDER = "openai"
    embedding_settings.EMBEDDING_FALLBACK_BASE_URL = fake_embedder.openai_url
    fake_embedder.script(Fault(status=401))
    with pytest.raises(EmbeddingError) as caught:
        factory.get_provider().embed(["hello"])
    assert caught.value.kind == "permanent" and fake_embedder.count() == 1


def test_when_both_fail_the_primarys_kind_and_retry_after_decide(embedding_settings, fake_embedder):
    embedding_settings.EMBEDDING_BASE_URL = fake_embedder.openai_url
    embedding_settings.EMBEDDING_FALLBACK_PROVIDER = "openai"
    embedding_settings.EMBEDDING_FALLBACK_BASE_URL = fake_embedder.openai_url
    fake_embedder.script(Fault(status=429, headers={"Retry-After": "12"}), Fault(status=400))
    with pytest.raises(EmbeddingError) as caught:
        factory.get_provider().embed(["hello"])
    error = caught.value
    assert (error.kind, error.retry_after) == ("rate_limited", 12)
    assert "HTTP 429" in str(error) and "the fallback failed too" in str(error) and "HTTP 400" in str(error)


@pytest.mark.parametrize(
    "fallback, model, send_dimensions, why",
    [
        ("tei", "another-model", False, "'another-model' vectors of 8 dimensions"),
        ("openai", "another-model", False, "'another-model' vectors"),
        ("tei", "fake-embedder-model", True, "but the primary makes 'fake-embedder-model@8d'"),
    ],
    ids=["tei, other model", "openai, other model", "shortened vs full vectors"],
)
def test_a_fallback_with_other_vectors_is_refused(embedding_settings, fallback, model, send_dimensions, why):
    embedding_settings.EMBEDDING_SEND_DIMENSIONS = send_dimensions
    embedding_settings.EMBEDDING_FALLBACK_PROVIDER = fallback
    embedding_settings.EMBEDDING_FALLBACK_MODEL = model
    embedding_settings.EMBEDDING_FALLBACK_BASE_URL = "http://127.0.0.1:9"
    with pytest.raises(ImproperlyConfigured) as caught:
        factory.get_provider()
    assert why in str(caught.value)
    assert "vectors from different models must never mix in one column" in str(caught.value)


# --- Start-up: bad settings stop `manage.py check` with the fix in the message ------------------


def manage_check(**overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDDING_") and k != "DATABASE_URL"}
    env.update(DEBUG="1", **overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


OPENAI = {
    "EMBEDDING_PROVIDER": "openai",
    "EMBEDDING_BASE_URL": "https://api.example.com/v1",
    "EMBEDDING_MODEL": "text-embedding-3-small",
    "EMBEDDING_API_KEY": API_KEY,
}

BAD_SETTINGS = {
    "unknown provider": ({"EMBEDDING_PROVIDER": "cohere"}, "EMBEDDING_PROVIDER='cohere' is not allowed"),
    "openai without URL or model": (
        {"EMBEDDING_PROVIDER": "openai"},
        "EMBEDDING_PROVIDER=openai needs EMBEDDING_BASE_URL and EMBEDDING_MODEL; e.g. EMBEDDING_BASE_URL=https://",
    ),
    "tei without model": (
        {"EMBEDDING_PROVIDER": "tei", "EMBEDDING_BASE_URL": "http://tei:8080"},
        "EMBEDDING_PROVIDER=tei needs EMBEDDING_MODEL",
    ),
    "not http": (
        {**OPENAI, "EMBEDDING_BASE_URL": "ftp://api.example.com/v1"},
        "must be an http:// or https:// URL",
    ),
    "no scheme": (
        {**OPENAI, "EMBEDDING_BASE_URL": "api.example.com/v1"},
        "must be an http:// or https:// URL",
    ),
    "key in the URL": (
        {**OPENAI, "EMBEDDING_BASE_URL": f"https://api.example.com/v1?key={API_KEY}"},
        "must not contain a user name, password, query string",
    ),
    "URL for local": ({"EMBEDDING_BASE_URL": "http://tei:8080"}, "EMBEDDING_PROVIDER=local does not use it"),
    "send dimensions to tei": (
        {
            "EMBEDDING_PROVIDER": "tei",
            "EMBEDDING_BASE_URL": "http://tei:8080",
            "EMBEDDING_MODEL": "m",
            "EMBEDDING_SEND_DIMENSIONS": "1",
        },
        "EMBEDDING_SEND_DIMENSIONS=1 applies only to EMBEDDING_PROVIDER=openai",
    ),
    "send dimensions typo": ({**OPENAI, "EMBEDDING_SEND_DIMENSIONS": "ture"}, "is not a yes/no value"),
    "batch size zero": ({**OPENAI, "EMBEDDING_BATCH_SIZE": "0"}, "EMBEDDING_BATCH_SIZE=0 is out of range"),
    "timeout beyond the task": ({**OPENAI, "EMBEDDING_TIMEOUT_SECONDS": "90"}, "Use at most 73."),
    "fallback without URL": (
        {**OPENAI, "EMBEDDING_FALLBACK_PROVIDER": "tei"},
        "EMBEDDING_FALLBACK_PROVIDER=tei needs EMBEDDING_FALLBACK_BASE_URL",
    ),
    "fallback settings without a fallback": (
        {**OPENAI, "EMBEDDING_FALLBACK_BASE_URL": "http://tei:8080"},
        "EMBEDDING_FALLBACK_BASE_URL set but EMBEDDING_FALLBACK_PROVIDER is not set",
    ),
    "fallback of another model": (
        {
            **OPENAI,
            "EMBEDDING_FALLBACK_PROVIDER": "tei",
            "EMBEDDING_FALLBACK_BASE_URL": "http://tei:8080",
            "EMBEDDING_FALLBACK_MODEL": "BAAI/bge-small-en-v1.5",
        },
        "vectors from different models must never mix in one column",
    ),
}


@pytest.mark.parametrize("case", BAD_SETTINGS, ids=list(BAD_SETTINGS))
def test_bad_embedding_settings_stop_start_up_with_the_fix(case):
    overrides, expected = BAD_SETTINGS[case]
    result = manage_check(**overrides)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and expected in result.stderr
    assert API_KEY not in result.stderr + result.stdout


def test_good_embedding_settings_pass_the_check():
    fallback = {
        "EMBEDDING_FALLBACK_PROVIDER": "openai",
        "EMBEDDING_FALLBACK_BASE_URL": "http://mirror:8000/v1",
    }
    result = manage_check(**OPENAI, **fallback)
    assert result.returncode == 0, result.stderr


def test_every_embedding_variable_is_documented():
    read = set(re.findall(r'"(EMBEDDING_[A-Z_]+)"', (ROOT / "embedding_site" / "settings.py").read_text()))
    read -= {"EMBEDDING_FALLBACK", "EMBEDDING_PREVIOUS"}  # prefixes passed to the check, not variables
    documented = (ROOT / ".env.example").read_text()
    assert read and not {name for name in read if f"{name}=" not in documented}
