"""The typed schema of every queue setting operators can change at run time: what each key
means, its type, range and default, and `validate_value`, through which every write — admin,
command, shell, the model's save — goes, so a bad value is refused with a message naming the
key, the value and what is allowed. Reading and writing the values is `config.py`'s.
"""

import json
from dataclasses import dataclass, field, fields

from django.core.exceptions import ImproperlyConfigured, ValidationError

PRIORITIES = ("high", "medium", "low")


@dataclass(frozen=True)
class ConfigKey:
    key: str
    label: str
    kind: type  # bool, int, or dict (priority weights)
    default: object
    help_text: str
    min_value: int | None = None
    max_value: int | None = None
    unit: str = ""
    keys: tuple[str, ...] = field(default=())

    @property
    def default_display(self) -> str:
        return display(self.default, self)

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
        if self.kind is bool:
            return "on or off"
        if self.kind is dict:
            return (
                f"a whole number from {self.min_value:,} to {self.max_value:,} for each; at least one above 0"
            )
        return self.allowed(grouped=True)


_KEYS = [
    ConfigKey("queue_enabled", "Queue enabled", bool, True,
              "When off, workers stop claiming new work; items already claimed finish."),
    ConfigKey("batch_size", "Batch size", int, 32,
              "Documents a worker claims at once. 1 is the careful 'marathon' mode; larger is faster.",
              1, 1000, "documents"),
    ConfigKey("max_concurrent_workers", "Concurrent workers per machine", int, 2,
              "How many drain tasks each machine's cluster keeps running at once (one fewer than "
              "Q_WORKERS leaves a process for the schedules). A new machine adds its own.",
              1, 64, "workers"),
    ConfigKey("max_retries", "Maximum retries", int, 3,
              "Attempts after a temporary error before an item moves to the dead-letter list.",
              0, 20, "retries"),
    ConfigKey("rate_limit_delay_ms", "Rate-limit delay", int, 1000,
              "Wait before retrying when the provider says 'too many requests' without a Retry-After.",
              0, 3_600_000, "ms"),
    ConfigKey("worker_heartbeat_interval_ms", "Heartbeat interval", int, 30000,
              "How often workers report that they are alive; silent for 1.5 intervals is late, for 3 dead.",
              1000, 600_000, "ms"),
    ConfigKey("lease_seconds", "Lease length", int, 300,
              "How long a claimed batch belongs to its worker before others may take it back.",
              10, 86_400, "seconds"),
    ConfigKey("queue_cleanup_interval_hours", "Keep completed items for", int, 24,
              "Completed queue items, and workers that finished normally, older than this are deleted.",
              1, 8760, "hours"),
    ConfigKey("priority_weights", "Priority weights", dict, {"high": 3, "medium": 2, "low": 1},
              "Higher weight is claimed first; waiting items gain weight with age so none starve.",
              0, 1000, keys=PRIORITIES),
    ConfigKey("api_quota_per_minute", "Requests per minute", int, 60,
              "Provider requests allowed per minute, shared by all workers.", 1, 1_000_000, "requests/min"),
    ConfigKey("token_quota_per_minute", "Tokens per minute", int, 100000,
              "Provider tokens allowed per minute, shared by all workers.", 1, 1_000_000_000, "tokens/min"),
    ConfigKey("circuit_breaker_failure_threshold", "Breaker threshold", int, 5,
              "Consecutive provider failures that open the circuit breaker.", 1, 1000, "failures"),
    ConfigKey("circuit_breaker_recovery_seconds", "Breaker recovery", int, 60,
              "How long the breaker stays open before a trial request.", 1, 86_400, "seconds"),
]  # fmt: skip

SCHEMA: dict[str, ConfigKey] = {item.key: item for item in _KEYS}

DEFAULTS = {key: item.default for key, item in SCHEMA.items()}


@dataclass(frozen=True)
class QueueSettings:
    """Every queue setting, typed: what `config.current()` returns. Its fields are SCHEMA's keys
    (checked below), so a misspelt setting fails where it is written, not as a KeyError at run
    time; named apart from Django's `settings` at every call site."""

    queue_enabled: bool
    batch_size: int
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
        return "on" if value else "off"
    if isinstance(value, dict):
        return ", ".join(f"{k} {display(v)}" for k, v in value.items())
    if _is_int(value):
        return f"{value:,}" + (f" {item.unit}" if item and item.unit else "")
    return show_value(value)


def show_value(value) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
