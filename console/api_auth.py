"""Who is calling the search API, and whether they may call again this minute.

A caller is either a logged-in user (the admin's session) or the owner of an API token sent
as `Authorization: Bearer <token>`. A request that sends a token is judged by the token
alone, so a script with a bad token fails loudly even in a browser that is logged in.
"""

import math
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from documents.models import ApiToken

# Writing last_used_at on every request would turn each search into a write; this is
# precise enough to tell a live token from a forgotten one.
LAST_USED_PRECISION = timedelta(minutes=1)


class NotAuthenticated(Exception):
    """The request carries no usable credentials; the message says what to fix."""


def api_user(request):
    """The active user behind the request's bearer token or session; else NotAuthenticated."""
    header = request.headers.get("Authorization")
    if header is None:
        if request.user.is_authenticated:  # the session backend already refuses inactive users
            return request.user
        raise NotAuthenticated("Log in, or send an API token: Authorization: Bearer <token>.")
    scheme, _, plaintext = header.partition(" ")
    if scheme.lower() != "bearer" or not plaintext.strip():
        raise NotAuthenticated("The Authorization header must be: Bearer <token>.")
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=ApiToken.hash_token(plaintext.strip()))
        .first()
    )
    if token is None:
        raise NotAuthenticated("This API token is not valid.")
    if token.revoked_at is not None:
        raise NotAuthenticated("This API token has been revoked.")
    if not token.user.is_active:
        raise NotAuthenticated("This API token's user is inactive.")
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


# A fixed one-minute window per user, started by the user's first request in it. One atomic
# upsert: concurrent requests from any number of web processes each see their own count (the
# row lock lasts this statement only), and no read-modify-write happens in Python. In SET,
# `w.` is the row before the update; `excluded.window_start` is this request's clock reading.
# The count stops at limit + 1 so refused requests cannot grow it without bound.
TAKE_SEARCH_REQUEST = """
INSERT INTO search_rate_windows AS w (user_id, window_start, requests)
VALUES (%(user_id)s, clock_timestamp(), 1)
ON CONFLICT (user_id) DO UPDATE SET
    window_start = CASE WHEN w.window_start <= excluded.window_start - interval '1 minute'
                        THEN excluded.window_start ELSE w.window_start END,
    requests = CASE WHEN w.window_start <= excluded.window_start - interval '1 minute'
                    THEN 1 ELSE least(w.requests + 1, %(limit)s + 1) END
RETURNING requests,
          greatest(0, extract(epoch FROM w.window_start + interval '1 minute' - clock_timestamp()))::float8
"""


def take_search_request(user_id: int, limit_per_minute: int) -> int | None:
    """Count one request; None when it is within the limit, else the seconds until the
    window ends (for Retry-After, at least 1)."""
    with connection.cursor() as cursor:
        cursor.execute(TAKE_SEARCH_REQUEST, {"user_id": user_id, "limit": limit_per_minute})
        requests, seconds_left = cursor.fetchone()
    if requests <= limit_per_minute:
        return None
    return max(1, math.ceil(seconds_left))
