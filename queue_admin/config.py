"""The typed schema of every queue setting operators can change at run time.

Values live in the `embedding_queue_config` table (so a change reaches every worker without a
restart); this module says what each key means, its type, range and default. Every write —
admin, command, shell — goes through `validate_value`, so a bad value is refused with a
message naming the key, the value and what is allowed.
"""

import json
import logging
import time
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

logger = logging.getLogger("sidecar.config")

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
            # All zero would leave only the age of an item to order the queue: no priorities.
            and any(v > 0 for v in value.values())
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


# How long a worker trusts its copy of the settings: a change in the admin reaches every
# worker within this many seconds, without a restart.
CACHE_SECONDS = 5.0
_cache: dict = {"values": None, "read_at": float("-inf")}


def current() -> dict:
    """All settings (stored values over defaults), re-read at most every CACHE_SECONDS."""
    from queue_admin.models import QueueConfig  # the models import this module

    now = time.monotonic()
    if _cache["values"] is None or now - _cache["read_at"] >= CACHE_SECONDS:
        stored = dict(QueueConfig.objects.values_list("config_key", "config_value"))
        _cache["values"] = {**DEFAULTS, **{k: v for k, v in stored.items() if _usable(k, v)}}
        _cache["read_at"] = now
    return _cache["values"]


def _valid(key: str, value) -> bool:
    try:
        validate_value(key, value)
    except ValidationError:
        return False
    return True


def _usable(key: str, value) -> bool:
    """Whether a stored value may be used. Every Sidecar writer validates, but psql does not:
    a value the schema refuses (say batch_size = "lots") would stop every worker at its next
    claim, so it is ignored, with a warning, and the default applies until someone fixes it."""
    if key not in SCHEMA:
        return False
    try:
        validate_value(key, value)
    except ValidationError as exc:
        logger.warning(
            "queue setting %s is ignored, the default %s applies: %s",
            key,
            show_value(SCHEMA[key].default),
            " ".join(exc.messages),
        )
        return False
    return True


def forget_cached() -> None:
    """Make the next `current()` read the table (tests, and right after an admin change)."""
    _cache["values"] = None


def set_value(key: str, value, user=None):
    """Validate and store one setting, record the change (who, when, old -> new) in the same
    transaction, and drop this process's cached copy. Returns the ConfigChange, or None when
    the value did not change. Other processes see the new value within CACHE_SECONDS."""
    from django.db import transaction

    from queue_admin.models import ConfigChange, QueueConfig

    validate_value(key, value)
    with transaction.atomic():
        # FOR UPDATE: two people saving at once get two history rows in order, each with the
        # old value the other one left.
        row = QueueConfig.objects.select_for_update().filter(config_key=key).first()
        old = row.config_value if row else None
        if row is not None and old == value and type(old) is type(value):
            return None
        if row is None:
            row = QueueConfig(config_key=key, description=SCHEMA[key].help_text)
        row.config_value = value
        row.updated_by = user if user is not None and user.is_authenticated else None
        row.save()
        change = ConfigChange.objects.create(
            config_key=key, old_value=old, new_value=value, changed_by=row.updated_by
        )
    forget_cached()
    return change


class ConcurrentChange(ValidationError):
    """Someone else changed a setting after this person loaded the page."""


def apply_changes(changes: dict, loaded: dict, user=None) -> list:
    """Save several settings at once, all or nothing (the settings editor's Save).

    Steps: validate every value; lock the rows; refuse with ConcurrentChange if any setting's
    stored value is no longer what the person saw when they loaded the page (their edit would
    silently overwrite someone else's); then `set_value` each one, which records the history.
    Returns the ConfigChange rows written.
    """
    from django.db import transaction

    from queue_admin.models import QueueConfig

    for key, value in changes.items():
        validate_value(key, value)
    with transaction.atomic():
        stored = dict(
            QueueConfig.objects.select_for_update()
            .filter(config_key__in=list(changes))
            .values_list("config_key", "config_value")
        )
        # A stored value the schema refuses was shown as its default (see `current`).
        effective = {
            key: stored[key] if key in stored and _valid(key, stored[key]) else DEFAULTS[key]
            for key in changes
        }
        moved = [key for key in changes if effective[key] != loaded.get(key)]
        if moved:
            names = ", ".join(SCHEMA[key].label for key in moved)
            raise ConcurrentChange(
                f"{names} changed since you opened this page (someone else saved it). Nothing was "
                "saved: reload the page to see the current values, then make your change again.",
                code="concurrent_change",
            )
        written = [set_value(key, value, user=user) for key, value in changes.items()]
    return [change for change in written if change is not None]
