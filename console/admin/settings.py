"""The queue settings editor: every setting on one page, typed widgets, history below.

The changelist of QueueConfig *is* the editor; a single setting's change page sends people
there. Saving goes through `config.apply_changes` (validate all, refuse a concurrent edit,
record each change), so the page holds no rules of its own.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from console.admin.base import ReadOnlyAdmin
from console.settings_forms import QueueSettingsForm
from queue_admin import config
from queue_admin.models import ConfigChange, QueueConfig

HISTORY_ON_PAGE = 20


def _described(changes) -> str:
    return "; ".join(f"{c.label}: {c.old_display} → {c.new_display}" for c in changes)


@admin.register(QueueConfig)
class QueueConfigAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False  # the keys are fixed by the schema; the migration seeds every one

    def has_delete_permission(self, request, obj=None):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return HttpResponseRedirect(reverse("admin:queue_admin_queueconfig_changelist"))

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        editable = self.has_change_permission(request)
        config.forget_cached()  # show what is stored now, not this process's 5-second copy
        current = config.current()
        preview = None
        preset_post = request.method == "POST" and (
            "preview_preset" in request.POST or "apply_preset" in request.POST
        )
        if preset_post:
            if not editable:
                raise PermissionDenied
            if "apply_preset" in request.POST:
                self._apply_preset(request, request.POST["apply_preset"])
                return HttpResponseRedirect(request.path)
            preview = self._preset_preview(request.POST["preview_preset"], current)
            if preview is None:
                self.message_user(request, _("There is no such mode."), messages.ERROR)
        settings_post = request.method == "POST" and not preset_post
        form = QueueSettingsForm(request.POST if settings_post else None, current=current, editable=editable)
        if settings_post:
            if not editable:
                raise PermissionDenied
            if form.is_valid():
                saved = self._save(request, form)
                if saved is not None:
                    return HttpResponseRedirect(request.path)
            else:
                self.message_user(
                    request, _("Nothing was saved: correct the values marked below."), messages.ERROR
                )
        context = {
            **self.admin_site.each_context(request),
            "title": _("Queue settings"),
            "subtitle": None,
            "opts": self.model._meta,
            "form": form,
            "editable": editable,
            "cache_seconds": int(config.CACHE_SECONDS),
            "history": ConfigChange.objects.select_related("changed_by")[:HISTORY_ON_PAGE],
            "history_url": reverse("admin:queue_admin_configchange_changelist"),
            "presets": config.presets().values(),
            "current_preset": config.preset_label(config.current_preset(current)),
            "custom_preset": config.current_preset(current) == "custom",
            "preset_preview": preview,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/queue_admin/queueconfig/settings.html", context)

    def _preset_preview(self, name, current):
        """What the mode would change, shown for confirmation before anything is saved."""
        if name not in config.presets():
            return None
        changes = config.preset_changes(name, current)
        return {
            "preset": config.presets()[name],
            "changes": [
                (setting, config.display(now, setting), config.display(then, setting))
                for setting, now, then in changes
            ],
            # What the person saw: applying refuses if someone changed these meanwhile.
            "loaded": [(setting.key, config.show_value(now)) for setting, now, _then in changes],
        }

    def _apply_preset(self, request, name):
        # The preview posts what it showed for each setting it changes; one it did not list
        # already had the preset's value (every preset setting is a whole number).
        loaded = {}
        for key, value in config.presets().get(name, config.Preset("", "", "", {})).values.items():
            shown = request.POST.get(f"loaded_{key}", str(value))
            loaded[key] = int(shown) if shown.lstrip("-").isdigit() else None
        try:
            changes = config.apply_preset(name, loaded, user=request.user)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return
        described = _described(changes) or _("nothing changed")
        self.message_user(
            request,
            _(
                "Switched to %(mode)s. %(changes)s. Running workers pick up changes within %(seconds)s "
                "seconds; no restart needed."
            )
            % {"mode": config.preset_label(name), "changes": described, "seconds": int(config.CACHE_SECONDS)},
            messages.SUCCESS,
        )

    def _save(self, request, form):
        """Save what this person changed; returns the changes, or None after a refusal."""
        keys = form.changed_settings()
        if not keys:
            self.message_user(request, _("Nothing changed."), messages.INFO)
            return []
        values = form.values()
        try:
            changes = config.apply_changes(
                {key: values[key] for key in keys},
                loaded={key: form.loaded_value(key) for key in keys},
                user=request.user,
            )
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return None
        self.message_user(
            request,
            _(
                "Saved. %(changes)s. Running workers pick up changes within %(seconds)s seconds; no restart needed."
            )
            % {"changes": _described(changes), "seconds": int(config.CACHE_SECONDS)},
            messages.SUCCESS,
        )
        return changes


@admin.register(ConfigChange)
class ConfigChangeAdmin(ReadOnlyAdmin):
    """The history of every settings change: who, when, old → new. Written only by
    `config.set_value`; nobody edits or deletes it here."""

    list_display = ("changed_at", "changed_by", "setting", "old_value_shown", "new_value_shown")
    list_filter = ("config_key",)
    list_select_related = ("changed_by",)
    date_hierarchy = "changed_at"

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=gettext_lazy("setting"), ordering="config_key")
    def setting(self, obj):
        return obj.label

    @admin.display(description=gettext_lazy("old value"))
    def old_value_shown(self, obj):
        return obj.old_display

    @admin.display(description=gettext_lazy("new value"))
    def new_value_shown(self, obj):
        return obj.new_display
