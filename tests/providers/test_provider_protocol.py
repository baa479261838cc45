"""Every provider keeps the whole contract the worker reads (documents/providers/base.py): no
attribute the worker has to guess with getattr, and `embed` takes the retry check explicitly."""

import inspect

import pytest

from documents.providers.base import EmbeddingProvider
from documents.providers.fallback import FallbackEmbeddingProvider
from documents.providers.local import LocalEmbeddingProvider
from documents.providers.openai import OpenAIEmbeddingProvider
from documents.providers.tei import TEIEmbeddingProvider
from tests.fakes import FakeEmbedderForQueueTests


def every_provider():
    tei = TEIEmbeddingProvider("http://127.0.0.1:9", "m", 384)
    openai = OpenAIEmbeddingProvider("http://127.0.0.1:9", None, "m", 384)
    return {
        "local": LocalEmbeddingProvider(),
        "tei": tei,
        "openai": openai,
        "fallback": FallbackEmbeddingProvider(tei, TEIEmbeddingProvider("http://127.0.0.1:8", "m", 384)),
        "queue tests' fake": FakeEmbedderForQueueTests(),
    }


@pytest.mark.parametrize("name", list(every_provider()))
def test_each_provider_keeps_the_protocol(name):
    provider = every_provider()[name]
    assert isinstance(provider, EmbeddingProvider)
    assert "may_retry" in inspect.signature(provider.embed).parameters
    assert provider.token_spans is None or callable(provider.token_spans)


def test_what_each_provider_says_about_itself():
    providers = every_provider()
    assert {name: p.is_remote for name, p in providers.items()} == {
        "local": False, "tei": True, "openai": True, "fallback": True, "queue tests' fake": False,
    }  # fmt: skip
    assert providers["fallback"].fallback is not None
    assert [name for name, p in providers.items() if p.fallback is not None] == ["fallback"]
    assert [name for name, p in providers.items() if p.token_spans is not None] == ["local"]
