"""The admin through a real browser (tests/browser.py): what an operator sees and clicks."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_login_shows_the_admin_index_and_a_wrong_password_is_refused(browser, live_server, superuser):
    page = browser.new_page(base_url=live_server.url)
    try:
        page.goto("/admin/login/")
        page.fill("#id_username", superuser.username)
        page.fill("#id_password", "not-the-password")
        page.click("input[type=submit]")
        assert "Please enter the correct username and password" in page.inner_text(".errornote")

        page.fill("#id_username", superuser.username)
        page.fill("#id_password", "browser-test-password")
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")
        assert "Embeddings, queue and workers" in page.inner_text("#content")
    finally:
        page.close()


def test_anonymous_visitors_are_sent_to_the_login_page(browser, live_server):
    page = browser.new_page(base_url=live_server.url)
    try:
        page.goto("/admin/queue_admin/queueitem/")
        assert "/admin/login/" in page.url
    finally:
        page.close()
