"""The admin index and sidebar: operators' pages first, in the order of their work; the
plumbing (login throttling, django-q2's task tables, API tokens, provider limits) under
Advanced."""

import re

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def _groups(html: str) -> dict[str, list[str]]:
    """Each group caption on the index with the link texts listed under it, in page order."""
    groups = {}
    content = html.split('id="content-start"', 1)[1]
    for caption, body in re.findall(
        r"<caption>\s*<a [^>]*>([^<]+)</a>\s*</caption>(.*?)</table>", content, re.S
    ):
        groups[caption.strip()] = [
            name.strip() for name in re.findall(r'<th scope="row"[^>]*>\s*<a [^>]*>([^<]+)</a>', body)
        ]
    return groups


def test_the_index_lists_operators_pages_first_and_in_their_order(admin_client, seeded_config):
    groups = _groups(admin_client.get(reverse("admin:index")).content.decode())
    assert list(groups) == ["Sidecar", "Advanced"]
    first_seven = ["Dashboard", "Source documents", "Sources", "Semantic search", "Search quality",
                   "Dead letters", "Workers", "Queue settings"]  # fmt: skip
    assert groups["Sidecar"][: len(first_seven)] == first_seven
    assert "Queue items" in groups["Sidecar"]  # the Embedding queue stays with the operators


def test_the_plumbing_is_under_advanced_and_named_by_its_app(admin_client, seeded_config):
    groups = _groups(admin_client.get(reverse("admin:index")).content.decode())
    advanced = groups["Advanced"]
    assert "API tokens — Documents and embeddings" in advanced
    assert "Provider limits — Embedding queue" in advanced
    assert "Access attempts — Axes" in advanced  # django-axes' login throttling
    assert "Queued tasks — Task queue (django-q2)" in advanced
    for name in advanced:
        assert name not in groups["Sidecar"]
    assert not any("Access" in name or "tasks" in name for name in groups["Sidecar"])


def test_the_sidebar_has_the_same_groups_and_the_dashboard_is_not_current_everywhere(
    admin_client, seeded_config
):
    page = admin_client.get(reverse("admin:queue_admin_worker_changelist")).content.decode()
    sidebar = page.split('id="nav-sidebar"', 1)[1].split("</nav>", 1)[0]
    assert sidebar.index(">Sidecar<") < sidebar.index(">Advanced<")
    assert sidebar.index(">Workers<") < sidebar.index(">Advanced<")
    current = re.findall(r'<tr class="model-(\w+) current-model"', sidebar)
    assert current == ["worker"]


def test_an_apps_own_page_still_lists_only_that_app(admin_client, seeded_config):
    page = admin_client.get(reverse("admin:app_list", args=["queue_admin"])).content.decode()
    groups = _groups(page)
    assert list(groups) == ["Embedding queue"]
    assert "Workers" in groups["Embedding queue"] and "API tokens" not in page


def test_an_operator_sees_no_advanced_group_for_what_they_may_not_open(seeded_config):
    operator = User.objects.create_user("operator", password="pw", is_staff=True)
    operator.groups.add(Group.objects.get(name="Queue operators"))
    client = Client()
    client.force_login(operator)
    groups = _groups(client.get(reverse("admin:index")).content.decode())
    assert groups["Sidecar"][0] == "Dashboard"
    assert "Access attempts" not in str(groups.get("Advanced", []))
