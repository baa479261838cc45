"""The typed schema of every queue setting operators can change at run time: what each key
means, its type, range and default, and `validate_value`, through which every write — admin,
command, shell, the model's save — goes, so a bad value is refused with a message naming the
key, the value and what is allowed. Reading and writing the values is `config.py`'s.
"""

import json
from dataclasses import dataclass, field, fields

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from documents.priority import in_words

PRIORITIES = ("high", "medium", "low")


@dataclass(frozen=True)
class ConfigKey:
    """One setting. `label`, `help_text` and `unit` are lazy translations (people read them in
    their language); `key` and the messages of `validate_value` stay English for scripts."""

    key: str
    label: str
    kind: type  # bool, int, or dict (priority weights)
    default: object
    help_text: str
    min_value: int | None = None
    max_value: int | None = None
    unit: str = ""
    keys: tuple[str, ...] = field(default=())
    # Defaults that follow the embedding provider in use (EMBEDDING_PROVIDER: local, openai,
    # tei), where `default` is the fallback. Such a key is stored only once a person sets it,
    # so the default comes along when the provider changes (config.current reads DEFAULTS).
    by_provider: dict = field(default_factory=dict)

    @property
    def effective_default(self):
        """The default for the provider this process embeds with."""
        from django.conf import settings

        return self.by_provider.get(settings.EMBEDDING_PROVIDER, self.default)

    @property
    def default_display(self) -> str:
        shown = display(self.effective_default, self)
        if not self.by_provider:
            return shown
        each = ", ".join(f"{name} {display(value)}" for name, value in sorted(self.by_provider.items()))
        return _("%(value)s (it follows the provider: %(each)s)") % {"value": shown, "each": each}

    def allowed(self, grouped: bool = False) -> str:
        """What values are allowed, in words; `grouped` writes 1,000,000 for people (messages
        from `validate_value` keep plain numbers, which scripts match)."""
        low, high = (
            (f"{self.min_value:,}", f"{self.max_value:,}") if grouped else (self.min_value, self.max_value)
        )
        if self.kind is bool:
            return "true or false"
        if self.kind is int:
            return f"a whole number from {low} to {high}"
        numbers = f"whole numbers from {low} to {high}"
        return f"an object with {numbers} for {', '.join(self.keys)}, at least one above 0"

    @property
    def allowed_display(self) -> str:
        """What is allowed, for people, in their language."""
        if self.kind is bool:
            return _("on or off")
        bounds = {"low": f"{self.min_value:,}", "high": f"{self.max_value:,}"}
        if self.kind is dict:
            return _("a whole number from %(low)s to %(high)s for each; at least one above 0") % bounds
        return _("a whole number from %(low)s to %(high)s") % bounds


_KEYS = [
    ConfigKey("queue_enabled", gettext_lazy("Queue enabled"), bool, True,
              gettext_lazy("When off, workers stop claiming new work; items already claimed finish.")),
    ConfigKey("batch_size", gettext_lazy("Batch size"), int, 32,
              gettext_lazy("Documents a worker claims at once. 1 is the careful 'marathon' mode; larger is faster."),
              1, 1000, gettext_lazy("documents"), by_provider={"local": 32, "openai": 256, "tei": 32}),
    ConfigKey("requests_in_flight", gettext_lazy("Requests in flight per worker"), int, 1,
              gettext_lazy("Batches each worker embeds at once: while one waits for the provider's answer, "
                           "the next is claimed and sent. More helps a remote provider far away; a local "
                           "model on the CPU gains nothing. A worker killed outright holds twice this many "
                           "batches until their leases run out."),
              1, 16, gettext_lazy("batches"), by_provider={"local": 1, "openai": 4, "tei": 4}),
    ConfigKey("max_concurrent_workers", gettext_lazy("Concurrent workers per machine"), int, 2,
              gettext_lazy("How many drain tasks each machine's cluster keeps running at once (one fewer than "
                 "Q_WORKERS leaves a process for the schedules). A new machine adds its own."),
              1, 64, gettext_lazy("workers")),
    ConfigKey("max_retries", gettext_lazy("Maximum retries"), int, 3,
              gettext_lazy("Attempts after a temporary error before an item moves to the dead-letter list."),
              0, 20, gettext_lazy("retries")),
    ConfigKey("rate_limit_delay_ms", gettext_lazy("Rate-limit delay"), int, 1000,
              gettext_lazy("Wait before retrying when the provider says 'too many requests' without a Retry-After."),
              0, 3_600_000, "ms"),
    ConfigKey("worker_heartbeat_interval_ms", gettext_lazy("Heartbeat interval"), int, 30000,
              gettext_lazy("How often workers report that they are alive; silent for 1.5 intervals is late, for 3 dead."),
              1000, 600_000, "ms"),
    ConfigKey("lease_seconds", gettext_lazy("Lease length"), int, 300,
              gettext_lazy("How long a claimed batch belongs to its worker before others may take it back."),
              10, 86_400, gettext_lazy("seconds")),
    ConfigKey("queue_cleanup_interval_hours", gettext_lazy("Keep completed items for"), int, 24,
              gettext_lazy("Completed queue items, and workers that finished normally, older than this are deleted."),
              1, 8760, gettext_lazy("hours")),
    ConfigKey("priority_weights", gettext_lazy("Priority weights"), dict, {"high": 3, "medium": 2, "low": 1},
              gettext_lazy("Higher weight is claimed first; waiting items gain weight with age so none starve."),
              0, 1000, keys=PRIORITIES),
    ConfigKey("api_quota_per_minute", gettext_lazy("Requests per minute"), int, 60,
              gettext_lazy("Provider requests allowed per minute, shared by all workers."), 1, 1_000_000,
              gettext_lazy("requests/min")),
    ConfigKey("token_quota_per_minute", gettext_lazy("Tokens per minute"), int, 100000,
              gettext_lazy("Provider tokens allowed per minute, shared by all workers."), 1, 1_000_000_000,
              gettext_lazy("tokens/min")),
    ConfigKey("circuit_breaker_failure_threshold", gettext_lazy("Breaker threshold"), int, 5,
              gettext_lazy("Consecutive provider failures that open the circuit breaker."), 1, 1000, gettext_lazy("failures")),
    ConfigKey("circuit_breaker_recovery_seconds", gettext_lazy("Breaker recovery"), int, 60,
              gettext_lazy("How long the breaker stays open before a trial request."), 1, 86_400, gettext_lazy("seconds")),
    ConfigKey("batch_api_min_documents", gettext_lazy("Batch API from"), int, 10_000,
              gettext_lazy("A backfill or re-embed of at least this many documents may go through the provider's "
                           "Batch API (OpenAI: half the price, answered within 24 hours) if the person starting "
                           "it chooses so. 0: never offered."),
              0, 100_000_000, gettext_lazy("documents")),
]  # fmt: skip

SCHEMA: dict[str, ConfigKey] = {item.key: item for item in _KEYS}

# What a key is when nobody set it, for this process's provider (see ConfigKey.by_provider).
DEFAULTS = {key: item.effective_default for key, item in SCHEMA.items()}


@dataclass(frozen=True)
class QueueSettings:
    """Every queue setting, typed: what `config.current()` returns. Its fields are SCHEMA's keys
    (checked below), so a misspelt setting fails where it is written, not as a KeyError at run
    time; named apart from Django's `settings` at every call site."""

    queue_enabled: bool
    batch_size: int
    requests_in_flight: int
    max_concurrent_workers: int
    max_retries: int
    rate_limit_delay_ms: int
    worker_heartbeat_interval_ms: int
    lease_seconds: int
    queue_cleanup_interval_hours: int
    priority_weights: dict[str, int]
    api_quota_per_minute: int
    token_quota_per_minute: int
    circuit_breaker_failure_threshold: int
    circuit_breaker_recovery_seconds: int
    batch_api_min_documents: int

    def value(self, key: str):
        """One setting by its key, for the pages and checks that go through SCHEMA."""
        return getattr(self, key)

    def as_dict(self) -> dict:
        return {item.name: getattr(self, item.name) for item in fields(self)}


if [item.name for item in fields(QueueSettings)] != list(SCHEMA):
    raise ImproperlyConfigured("QueueSettings' fields must be SCHEMA's keys, in the same order.")


def _is_int(value) -> bool:
    # bool is a subclass of int in Python; True must not pass as a batch size of 1.
    return isinstance(value, int) and not isinstance(value, bool)


def validate_value(key: str, value):
    """Return `value` if it is valid for `key`; raise ValidationError naming key, value and range."""
    item = SCHEMA.get(key)
    if item is None:
        raise ValidationError(
            "Unknown setting %(key)r. Known settings: %(known)s.",
            code="unknown_key",
            params={"key": key, "known": ", ".join(SCHEMA)},
        )
    ok = False
    if item.kind is bool:
        ok = isinstance(value, bool)
    elif item.kind is int:
        ok = _is_int(value) and item.min_value <= value <= item.max_value
    elif item.kind is dict:
        ok = (
            isinstance(value, dict)
            and set(value) == set(item.keys)
            and all(_is_int(v) and item.min_value <= v <= item.max_value for v in value.values())
        )
        # All zero would leave only the age of an item to order the queue: no priorities. Its
        # own code, so that the admin can say it in words (ALL_ZERO_IN_WORDS).
        if ok and not any(v > 0 for v in value.values()):
            raise ValidationError(
                "%(key)s = %(value)s is not allowed: use %(allowed)s.",
                code="all_zero",
                params={"key": key, "value": show_value(value), "allowed": item.allowed()},
            )
    if not ok:
        raise ValidationError(
            "%(key)s = %(value)s is not allowed: use %(allowed)s.",
            code="invalid_value",
            params={"key": key, "value": show_value(value), "allowed": item.allowed()},
        )
    return value


def display(value, item: ConfigKey | None = None) -> str:
    """A value as an operator reads it: "on", "30,000 ms", "high 3, medium 2, low 1"."""
    if isinstance(value, bool):
        return _("on") if value else _("off")
    if isinstance(value, dict):
        return ", ".join(f"{in_words(k)} {display(v)}" for k, v in value.items())
    if _is_int(value):
        return f"{value:,}" + (f" {item.unit}" if item and item.unit else "")
    return show_value(value)


def show_value(value) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
