"""The server-side request forgery guard of URL sources (documents/sources/web.py): no request
reaches a loopback, private, link-local or otherwise internal address unless the operator
allowed the host, not through a redirect, an odd spelling of an address or DNS rebinding."""

import datetime
import io
import ssl

import httpx
import pytest

from documents.sources.web import FetchError, Limits, check_url, fetch
from tests.web_server import PAGE_BODY, WebSite

NOTHING_ALLOWED = Limits(timeout_seconds=5)
LOCALHOST_ALLOWED = Limits(timeout_seconds=5, allowed_hosts=frozenset({"localhost"}))
HINT = "(server-side request forgery guard); allow the host with SOURCE_URL_ALLOWED_HOSTS if it is an intranet site"


def refusal(url, limits=NOTHING_ALLOWED, **kwargs) -> str:
    with pytest.raises(FetchError) as caught:
        fetch(url, io.BytesIO(), limits=limits, **kwargs)
    assert caught.value.permanent
    return str(caught.value)


def test_loopback_is_refused_before_any_connection(web_site):
    assert (
        refusal(web_site.url("/page"))
        == f"refused: localhost resolves to 127.0.0.1, a loopback address {HINT}"
    )
    assert (
        refusal(web_site.url("/page", host="127.0.0.1")) == f"refused: 127.0.0.1 is a loopback address {HINT}"
    )
    assert (web_site.connections, web_site.requests) == (0, [])


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f.0.0.1", "127.1"])
def test_odd_spellings_of_loopback_are_refused_once_resolved(web_site, spelling):
    # Not IP literals to the URL parser, but the resolver reads them as 127.0.0.1.
    assert refusal(web_site.url("/page", host=spelling)).startswith(
        f"refused: {spelling} resolves to 127.0.0.1, a loopback"
    )
    assert web_site.connections == 0


def test_a_redirect_into_loopback_is_refused_at_the_redirect(web_site):
    secret = web_site.url("/secret", host="127.0.0.1")

    message = refusal(web_site.url(f"/redirect?to={secret}"), LOCALHOST_ALLOWED)

    assert message == f"redirected to {secret}: refused: 127.0.0.1 is a loopback address {HINT}"
    assert web_site.paths() == [f"/redirect?to={secret}"]  # /secret never asked for


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://169.254.169.254/latest/meta-data/", "a link-local"),
        ("http://10.0.0.1/", "a private"),
        ("http://192.168.1.1/", "a private"),
        ("http://172.16.0.1/", "a private"),
        ("http://[::1]/", "a loopback"),
        ("http://[::ffff:127.0.0.1]/", "a loopback"),
        ("http://[::ffff:169.254.169.254]/", "a link-local"),
        ("http://[fd00::1]/", "a private"),
        ("http://[fe80::1]/", "a link-local"),
        ("http://0.0.0.0/", "an unspecified"),
        ("http://[::]/", "an unspecified"),
        ("http://100.64.0.1/", "a shared (100.64.0.0/10)"),
        ("http://224.0.0.1/", "a multicast"),
        ("http://240.0.0.1/", "a reserved"),
        ("http://[2002:7f00:1::]/", "a loopback"),  # 6to4 of 127.0.0.1
    ],
)
def test_internal_ip_literals_are_refused_without_a_connection(url, kind):
    sent = []
    client = httpx.Client(
        transport=httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(200))
    )
    with pytest.raises(FetchError) as caught:
        check_url(url, NOTHING_ALLOWED)
    assert f" {kind} address (server-side request forgery guard)" in str(caught.value)

    assert refusal(url, client=client) == str(caught.value)
    assert sent == []


def test_an_allowed_ip_literal_is_fetched(web_site):
    limits = Limits(allowed_hosts=frozenset({"127.0.0.1"}))
    dest = io.BytesIO()
    fetch(web_site.url("/page", host="127.0.0.1"), dest, limits=limits)
    assert dest.getvalue() == PAGE_BODY


# --- Names and DNS ---------------------------------------------------------------------------


def test_a_name_resolving_to_loopback_is_refused(web_site, fake_dns):
    fake_dns.answers["intranet.test"] = [["127.0.0.1"]]
    message = refusal(web_site.url("/page", host="intranet.test"))
    assert message == f"refused: intranet.test resolves to 127.0.0.1, a loopback address {HINT}"
    assert web_site.connections == 0


def test_one_internal_address_among_public_ones_refuses_the_name(fake_dns):
    fake_dns.answers["mixed.test"] = [["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "10.1.2.3"]]
    assert refusal("http://mixed.test/").startswith(
        "refused: mixed.test resolves to 10.1.2.3, a private address"
    )


def test_the_request_goes_to_the_checked_address_with_the_name_in_host(web_site, fake_dns):
    # If anything looked the name up again to connect, it would get 10.9.9.9 and fail.
    fake_dns.answers["rebind.test"] = [["127.0.0.1"], ["10.9.9.9"]]
    limits = Limits(timeout_seconds=5, allowed_hosts=frozenset({"rebind.test"}))
    dest = io.BytesIO()

    fetched = fetch(f"http://rebind.test:{web_site.port}/page", dest, limits=limits)

    assert (fetched.status, fetched.url, dest.getvalue()) == (
        200,
        f"http://rebind.test:{web_site.port}/page",
        PAGE_BODY,
    )
    assert web_site.requests[0].headers["host"] == f"rebind.test:{web_site.port}"
    assert fake_dns.lookups.count("rebind.test") == 1


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_dns_rebinding_to_loopback_after_the_check_does_not_reach_loopback(fake_dns, scheme):
    # Public when checked, loopback a moment later: the request still goes to the public
    # address, and the name is never asked again.
    fake_dns.answers["rebind.test"] = [["93.184.215.14"], ["127.0.0.1"]]
    sent = []
    client = httpx.Client(
        transport=httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(200))
    )

    fetch(f"{scheme}://rebind.test/page", io.BytesIO(), limits=NOTHING_ALLOWED, client=client)

    [request] = sent
    assert str(request.url) == f"{scheme}://93.184.215.14/page"
    assert request.headers["host"] == "rebind.test"
    # httpcore hands this to the TLS layer as server_hostname: SNI and the certificate check.
    assert request.extensions.get("sni_hostname") == ("rebind.test" if scheme == "https" else None)
    assert fake_dns.lookups.count("rebind.test") == 1


# --- https: the checked address, the real name's certificate -----------------------------------


def test_https_to_the_checked_address_verifies_the_names_certificate(fake_dns, tmp_path):
    site, client = tls_site(tmp_path, certificate_for="rebind.test")
    fake_dns.answers["rebind.test"] = [["127.0.0.1"], ["10.9.9.9"]]
    limits = Limits(timeout_seconds=5, allowed_hosts=frozenset({"rebind.test"}))
    dest = io.BytesIO()
    try:
        # The certificate names rebind.test only: connecting to 127.0.0.1 verifies because
        # SNI and the hostname check use the name.
        fetch(f"https://rebind.test:{site.port}/page", dest, limits=limits, client=client)
    finally:
        site.close()
    assert dest.getvalue() == PAGE_BODY
    assert site.requests[0].headers["host"] == f"rebind.test:{site.port}"


def test_https_with_a_certificate_for_another_name_is_refused(fake_dns, tmp_path):
    site, client = tls_site(tmp_path, certificate_for="other.test")
    fake_dns.answers["rebind.test"] = [["127.0.0.1"]]
    limits = Limits(timeout_seconds=5, allowed_hosts=frozenset({"rebind.test"}))
    try:
        message = refusal(f"https://rebind.test:{site.port}/page", limits, client=client)
    finally:
        site.close()
    assert message.startswith("TLS certificate not valid for rebind.test: ")
    assert site.requests == []


def tls_site(tmp_path, certificate_for):
    """A WebSite speaking TLS with a self-signed certificate for one name, and a client trusting it."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, certificate_for)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(certificate_for)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(certificate_pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client = httpx.Client(verify=ssl.create_default_context(cadata=certificate_pem.decode()), trust_env=False)
    return WebSite(tls=server_context), client
