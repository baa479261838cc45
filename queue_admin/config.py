"""The queue settings operators change at run time: read (cached for a few seconds) and
written (validated, with history).

Values live in the `embedding_queue_config` table (so a change reaches every worker without a
restart); `config_schema.py` says what each key means, its type, range and default.
"""

import logging
import time
from dataclasses import dataclass

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from queue_admin.config_schema import (  # noqa: F401 - the schema, for callers of this module
    DEFAULTS,
    PRIORITIES,
    SCHEMA,
    ConfigKey,
    QueueSettings,
    display,
    show_value,
    validate_value,
)
from queue_admin.models import ConfigChange, QueueConfig

logger = logging.getLogger("sidecar.config")


# How long a worker trusts its copy of the settings: a change in the admin reaches every
# worker within this many seconds, without a restart.
CACHE_SECONDS = 5.0
_cache: dict = {"values": None, "read_at": float("-inf")}


def current() -> QueueSettings:
    """All settings (stored values over defaults), re-read at most every CACHE_SECONDS."""
    now = time.monotonic()
    if _cache["values"] is None or now - _cache["read_at"] >= CACHE_SECONDS:
        stored = dict(QueueConfig.objects.values_list("config_key", "config_value"))
        _cache["values"] = QueueSettings(**{**DEFAULTS, **{k: v for k, v in stored.items() if _usable(k, v)}})
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
    validate_value(key, value)
    with transaction.atomic():
        _lock_settings()
        # FOR UPDATE: two people saving at once get two history rows in order, each with the
        # old value the other one left.
        row = QueueConfig.objects.select_for_update().filter(config_key=key).first()
        # No row: the default was in effect (a key that follows the provider has none until set).
        old = row.config_value if row else DEFAULTS[key]
        if old == value and type(old) is type(value):
            return None
        if row is None:
            with translation.override(None):  # the stored description is English, whoever saves
                row = QueueConfig(config_key=key, description=str(SCHEMA[key].help_text))
        row.config_value = value
        row.updated_by = user if user is not None and user.is_authenticated else None
        row.save()
        change = ConfigChange.objects.create(
            config_key=key, old_value=old, new_value=value, changed_by=row.updated_by
        )
    forget_cached()
    return change


def _lock_settings() -> None:
    """Serialise writers of the settings until the transaction ends. Row locks cannot: a key
    that follows the provider has no row to lock until its first save, and two first saves
    at once would both insert it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('sidecar-queue-settings'))")


class ConcurrentChange(ValidationError):
    """Someone else changed a setting after this person loaded the page."""


def apply_changes(changes: dict, loaded: dict, user=None) -> list:
    """Save several settings at once, all or nothing (the settings editor's Save).

    Steps: validate every value; lock the rows; refuse with ConcurrentChange if any setting's
    stored value is no longer what the person saw when they loaded the page (their edit would
    silently overwrite someone else's); then `set_value` each one, which records the history.
    Returns the ConfigChange rows written.
    """
    for key, value in changes.items():
        validate_value(key, value)
    with transaction.atomic():
        _lock_settings()
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
            names = ", ".join(str(SCHEMA[key].label) for key in moved)
            raise ConcurrentChange(
                _(
                    "%(names)s changed since you opened this page (someone else saved it). Nothing was "
                    "saved: reload the page to see the current values, then make your change again."
                )
                % {"names": names},
                code="concurrent_change",
            )
        written = [set_value(key, value, user=user) for key, value in changes.items()]
    return [change for change in written if change is not None]


@dataclass(frozen=True)
class Preset:
    """A named set of settings operators switch to in one change."""

    name: str
    label: str
    description: str
    values: dict


# Fast-track's batch, unless the provider's own default is bigger (a remote API's 256).
FAST_TRACK_BATCH = 64


def presets() -> dict[str, Preset]:
    """The seed's two processing modes. Fast-track's worker count follows this machine's
    django-q2 cluster (Q_WORKERS), less the one process the schedules need."""
    cluster_workers = django_settings.Q_CLUSTER.get("workers", 3)
    all_workers = min(max(cluster_workers - 1, 1), SCHEMA["max_concurrent_workers"].max_value)
    found = [
        Preset("marathon", gettext_lazy("Marathon"),
               gettext_lazy("Careful: one document at a time by one worker per machine. Slow, but a "
                            "bad document fails alone and nothing else waits on it."),
               {"batch_size": 1, "requests_in_flight": 1, "max_concurrent_workers": 1}),
        Preset("fast_track", gettext_lazy("Fast-track"),
               gettext_lazy("Big batches and every worker the machine runs: the most documents per "
                            "minute, within the provider limits."),
               {"batch_size": max(FAST_TRACK_BATCH, DEFAULTS["batch_size"]), "max_concurrent_workers": all_workers}),
    ]  # fmt: skip
    return {preset.name: preset for preset in found}


def current_preset(settings: QueueSettings | None = None) -> str:
    """'marathon', 'fast_track', or 'custom' when the settings match neither preset."""
    settings = settings or current()
    for preset in presets().values():
        if all(getattr(settings, key) == value for key, value in preset.values.items()):
            return preset.name
    return "custom"


def preset_label(name: str) -> str:
    return presets()[name].label if name in presets() else _("Custom")


def preset_changes(
    name: str, settings: QueueSettings | None = None
) -> list[tuple[ConfigKey, object, object]]:
    """What switching to the preset would change: [(setting, now, then)], unchanged ones left
    out, so the person sees it before saving."""
    settings = settings or current()
    preset = presets()[name]
    return [
        (SCHEMA[key], getattr(settings, key), value)
        for key, value in preset.values.items()
        if getattr(settings, key) != value
    ]


def apply_preset(name: str, loaded: dict, user=None) -> list:
    """Switch to a preset: every setting it names, validated and recorded, all or nothing.
    `loaded` is what the person saw; a setting changed since refuses the switch
    (ConcurrentChange), as in `apply_changes`."""
    if name not in presets():
        raise ValidationError(_("There is no mode called %(name)r.") % {"name": name}, code="unknown_preset")
    values = presets()[name].values
    # A setting the person was not shown already had the preset's value; it must still have it.
    return apply_changes(values, {key: loaded.get(key, value) for key, value in values.items()}, user=user)
