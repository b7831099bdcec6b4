"""The API's rate limits: per user (a token, a session) and per anonymous client address, counted
in the cache every web process shares; over them a 429 with Retry-After in the API's error shape,
declared on every operation. The suite runs with them off (conftest); each test here sets low ones."""

from __future__ import annotations

import logging
import os

import pytest
import redis
import yaml
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from drf_spectacular.views import SpectacularAPIView
from openapi_spec_validator import validate
from rest_framework.permissions import AllowAny
from rest_framework.test import APIClient

from portal.api.throttling import CACHE
from portal.settings.env import env_rate
from probes.responders import free_port

from .conftest import make_member, token_client


def forget(scope: str, *idents: object) -> None:
    """Counts left in the shared cache by an earlier run for these users or addresses go."""
    caches[CACHE].delete_many([f"throttle_{scope}_{ident}" for ident in idents])


def assert_throttled(response) -> None:
    assert response.status_code == 429, response.content
    wait = int(response.headers["Retry-After"])
    assert 1 <= wait <= 60
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"detail": f"Request was throttled. Expected available in {wait} seconds."}


def test_a_user_over_their_rate_gets_429_with_retry_after_and_others_do_not(db, settings):
    settings.API_RATE_USER = "3/min"
    alice, mallory = make_member("alice", "Mail team"), make_member("mallory", "Other team")
    forget("user", alice.pk, mallory.pk)
    api, other = token_client(alice), token_client(mallory)

    assert [api.get("/api/me/").status_code for _ in range(3)] == [200] * 3
    assert_throttled(api.get("/api/me/"))
    assert_throttled(api.post("/api/deployments/upsert/", {}))  # every operation, writes too
    # Alice's browser session counts with her token; another user has a count of their own.
    session = APIClient()
    session.force_login(alice)
    assert_throttled(session.get("/api/deployments/"))
    assert other.get("/api/me/").status_code == 200

    # Off ("0" or empty): no count.
    settings.API_RATE_USER = None
    assert api.get("/api/me/").status_code == 200


def test_anonymous_requests_are_counted_per_client_address(db, settings, monkeypatch):
    """Anonymous requests reach only what needs no login: the schema with API_SCHEMA_PUBLIC=1
    (its view takes its permissions at import, hence the monkeypatch)."""
    monkeypatch.setattr(SpectacularAPIView, "permission_classes", [AllowAny])
    settings.API_RATE_ANON = "2/min"
    settings.API_RATE_USER = "100/min"
    forget("anon", "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.9", "127.0.0.1")

    def schema(client: Client, **headers: str):
        return client.get("/api/schema/", HTTP_ACCEPT="application/json", **headers)

    first, second = Client(REMOTE_ADDR="192.0.2.1"), Client(REMOTE_ADDR="192.0.2.2")
    assert [schema(first).status_code for _ in range(2)] == [200] * 2
    assert_throttled(schema(first))
    assert schema(second).status_code == 200
    # What needs a login answers 401 before anything is counted, and a user from the same
    # address is counted as that user.
    assert first.get("/api/me/").status_code == 401
    alice = make_member("alice", "Mail team")
    forget("user", alice.pk)
    assert token_client(alice).get("/api/me/", REMOTE_ADDR="192.0.2.1").status_code == 200

    # Behind the proxy, the client is the address it appended to X-Forwarded-For: one in front of
    # it, written by the client, changes nothing, and the proxy's own address is no one's.
    settings.TRUST_X_FORWARDED_FOR = True
    proxy = Client(REMOTE_ADDR="127.0.0.1")
    codes = [schema(proxy, HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, 192.0.2.3").status_code for n in range(3)]
    assert codes == [200, 200, 429]
    assert schema(proxy, HTTP_X_FORWARDED_FOR="192.0.2.2").status_code == 200  # as `second` did once before
    assert_throttled(schema(proxy, HTTP_X_FORWARDED_FOR="192.0.2.2"))
    assert schema(proxy, HTTP_X_FORWARDED_FOR="192.0.2.9").status_code == 200


def test_health_and_metrics_are_not_rate_limited(catalog, settings):
    settings.API_RATE_USER = settings.API_RATE_ANON = "1/min"
    client = Client(REMOTE_ADDR="192.0.2.20")
    for path in ("/healthz", "/readyz", "/metrics"):
        assert [client.get(path).status_code for _ in range(3)] == [200] * 3, path


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="make test gives a real Redis")
def test_every_web_process_counts_in_the_same_redis(db, settings):
    settings.API_RATE_USER = "5/min"
    alice = make_member("alice", "Mail team")
    forget("user", alice.pk)
    assert token_client(alice).get("/api/me/").status_code == 200
    cache = caches[CACHE]
    assert type(cache).__name__ == "RedisCache"
    # Another process (here, another connection) reads the same count.
    key = cache.make_and_validate_key(f"throttle_user_{alice.pk}")
    assert redis.Redis.from_url(settings.REDIS_URL).exists(key) == 1


def test_a_cache_that_cannot_be_reached_lets_requests_through(db, settings, caplog):
    settings.API_RATE_USER = "1/min"
    settings.CACHES = {
        **settings.CACHES,
        CACHE: {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        },
    }
    api = token_client(make_member("alice", "Mail team"))
    with caplog.at_level(logging.WARNING, logger="portal.api.throttling"):
        assert [api.get("/api/me/").status_code for _ in range(2)] == [200, 200]
    assert "API rate limit not applied" in caplog.text


def test_rates_come_from_the_environment(monkeypatch):
    for text, rate in [("1200/min", "1200/min"), (" 5/S ", "5/s"), ("10/hour", "10/hour"), ("0", None), ("", None),
                       ("off", None), ("0/min", None)]:  # fmt: skip
        monkeypatch.setenv("API_RATE_USER", text)
        assert env_rate("API_RATE_USER", "1/min") == rate, text
    monkeypatch.delenv("API_RATE_USER")
    assert env_rate("API_RATE_USER", "1200/min") == "1200/min"
    for wrong in ("1200", "fast", "12/fortnight", "-1/min", "1.5/s"):
        monkeypatch.setenv("API_RATE_USER", wrong)
        with pytest.raises(ImproperlyConfigured, match="API_RATE_USER"):
            env_rate("API_RATE_USER", "1/min")


def test_the_schema_declares_429_with_retry_after_on_every_operation(db):
    client = APIClient()
    client.force_authenticate(make_member("schema", "Mail team"))
    schema = yaml.safe_load(client.get("/api/schema/").content)
    validate(schema)
    operations = [op for path in schema["paths"].values() for method, op in path.items() if method != "parameters"]
    assert len(operations) > 30
    for operation in operations:
        too_many = operation["responses"]["429"]
        assert too_many["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
        assert too_many["headers"]["Retry-After"]["required"] is True
    upsert = schema["paths"]["/api/deployments/upsert/"]["post"]["responses"]["429"]
    assert upsert["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert schema["components"]["schemas"]["Error"]["properties"]["detail"] == {
        "type": "string",
        "description": "What went wrong, in words.",
    }
