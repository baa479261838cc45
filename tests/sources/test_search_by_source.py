"""Search over attached tables: a hit says its source and its key there, and a search can be
kept to one source — from the engine, the shell and the API. Real vectors from the local model."""

import json

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from documents.models import SourceDocument
from documents.providers.local import LocalEmbeddingProvider
from queue_admin import searching, sources
from queue_admin.worker import QueueWorker
from tests.helpers import database_url, drop_host_tables

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_config", "fresh_search_caches"),
]


@pytest.fixture
def kitchen_and_garage():
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute("""CREATE TABLE public.recipe (id int PRIMARY KEY, name text, steps text);
                        CREATE TABLE public.repair (shop text, job int, notes text, PRIMARY KEY (shop, job));
                        INSERT INTO public.recipe VALUES (7, 'Sourdough', 'Let the dough rise overnight, then bake.');
                        INSERT INTO public.repair VALUES ('north', 1, 'Replaced the brake pads and bled the brakes.')""")
    sources.attach_table(
        sources.TableRequest("public.recipe", "{name}: {steps}", title_column="name"), name="kitchen"
    )
    sources.attach_table(sources.TableRequest("public.repair", "{notes}"), name="garage")
    SourceDocument.objects.create(
        title="Bread notes", content="Bread dough needs time to rise before baking."
    )
    with QueueWorker(LocalEmbeddingProvider(), name="test") as worker:
        worker.run()
    yield
    drop_host_tables("public.recipe", "public.repair")


def test_hits_carry_source_and_key_and_a_source_filter_keeps_to_it(kitchen_and_garage):
    everything = searching.search("how long should bread dough rise", k=3)
    assert {(hit.source, hit.source_key) for hit in everything.hits} >= {
        ("kitchen", "7"),
        ("garage", '["north", 1]'),
    }
    own = next(hit for hit in everything.hits if hit.source == "documents")
    assert own.source_key == own.document_id
    only_garage = searching.search("how long should bread dough rise", k=3, source="garage")
    assert [(hit.source, hit.source_key) for hit in only_garage.hits] == [("garage", '["north", 1]')]


def test_the_search_command_filters_by_source_and_says_which_sources_exist(kitchen_and_garage, capsys):
    call_command("search", "bread dough", "--source", "kitchen", "--json")
    hits = json.loads(capsys.readouterr().out)["results"]
    assert [(hit["source"], hit["source_key"], hit["title"]) for hit in hits] == [
        ("kitchen", "7", "Sourdough")
    ]
    with pytest.raises(CommandError, match="no source named 'bakery'.*documents, kitchen, garage"):
        call_command("search", "bread", "--source", "bakery")


def test_the_api_filters_by_source_and_refuses_an_unknown_one(kitchen_and_garage, client):
    from django.contrib.auth.models import User

    from documents.models import ApiToken

    user = User.objects.create_user("rag", is_staff=True)
    _, token = ApiToken.issue(user, "test")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    answer = client.get("/api/search", {"q": "brakes", "source": "garage"}, **headers)
    assert answer.status_code == 200, answer.content
    assert [(hit["source"], hit["source_key"]) for hit in answer.json()["results"]] == [
        ("garage", '["north", 1]')
    ]
    refused = client.get("/api/search", {"q": "brakes", "source": "nope"}, **headers)
    assert refused.status_code == 400 and "no source named 'nope'" in refused.json()["error"]
