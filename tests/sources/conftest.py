"""Fixtures for URL sources: a badly behaved web site on loopback, and a resolver we control."""

import socket
from types import SimpleNamespace

import pytest

from tests.web_server import WebSite


@pytest.fixture
def web_site():
    """tests/web_server.py's site on a free port of 127.0.0.1; its `requests` start empty."""
    site = WebSite()
    yield site
    site.close()


@pytest.fixture
def fake_dns(monkeypatch):
    """socket.getaddrinfo answering the names put in `answers`; every other name resolves for real.

    `answers[name]` is a list of successive answers, each a list of addresses (the last answer
    repeats), or an OSError to raise. `lookups` lists every name asked, in order. This stands
    in for DNS only; connections are real.
    """
    real_getaddrinfo = socket.getaddrinfo
    dns = SimpleNamespace(answers={}, lookups=[])

    def getaddrinfo(host, port, *args, **kwargs):
        dns.lookups.append(host)
        if host not in dns.answers:
            return real_getaddrinfo(host, port, *args, **kwargs)
        answer = dns.answers[host]
        if isinstance(answer, OSError):
            raise answer
        addresses = answer.pop(0) if len(answer) > 1 else answer[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
            if ":" in address
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return dns
