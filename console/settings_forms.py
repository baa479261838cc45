"""The queue settings editor's form: one typed field per key of `config.SCHEMA`.

Numbers get number fields with the schema's bounds, `queue_enabled` a switch, the priority
weights three number fields — never raw JSON. The form only parses and checks what was typed;
`config.validate_value` stays the one judge of what is allowed (the same rules as every other
writer), and `config.set_value` stores and records each change.
"""

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from documents.priority import in_words
from queue_admin import config
from queue_admin.config_schema import QueueSettings

# The schema refuses all-zero weights in words for scripts (key = value); an operator reads this.
ALL_ZERO_IN_WORDS = gettext_lazy(
    "Give at least one above 0: with every weight at 0 the priorities would not count at all, "
    "and items would be taken by age alone."
)


def _number_field(item: config.ConfigKey, label: str) -> forms.IntegerField:
    message = _("%(label)s: enter a whole number from %(low)s to %(high)s.") % {
        "label": label,
        "low": f"{item.min_value:,}",
        "high": f"{item.max_value:,}",
    }
    return forms.IntegerField(
        label=label,
        min_value=item.min_value,
        max_value=item.max_value,
        # Django's own messages ("Ensure this value is less than or equal to 1000000000") do not
        # say what *is* allowed in words an operator reads at a glance; ours say the whole range.
        error_messages={"invalid": message, "required": message, "min_value": message, "max_value": message},
        # The browser's own range check is switched off (the form has novalidate), so the
        # server's message, next to the field, is the one people see.
        widget=forms.NumberInput(attrs={"min": item.min_value, "max": item.max_value, "step": 1}),
    )


def weight_field_name(priority: str) -> str:
    return f"priority_weights_{priority}"


class QueueSettingsForm(forms.Form):
    """Every queue setting. `changed_data` (against the values the page was loaded with, kept
    in hidden inputs) says which ones the person changed; only those are saved."""

    def __init__(self, *args, current: QueueSettings, editable: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.current = current
        for key, item in config.SCHEMA.items():
            if item.kind is bool:
                field = forms.BooleanField(label=item.label, required=False)
                field.widget.attrs["class"] = "sidecar-switch"
                self._add(key, field, current.value(key), item)
            elif item.kind is int:
                self._add(key, _number_field(item, item.label), current.value(key), item)
            else:  # the priority weights: one number per priority
                for priority in item.keys:
                    shown = in_words(priority)
                    label = f"{item.label}: {shown}"
                    field = _number_field(item, label)
                    field.sub_label = shown
                    self._add(weight_field_name(priority), field, current.value(key)[priority], item)
        if not editable:
            for field in self.fields.values():
                field.disabled = True

    def _add(self, name: str, field: forms.Field, value, item: config.ConfigKey) -> None:
        field.initial = value
        field.show_hidden_initial = True
        field.setting = item  # the template shows help text, default and range from it
        self.fields[name] = field

    def grouped_fields(self):
        """(setting, [bound fields]) in schema order: one row per setting on the page."""
        for key, item in config.SCHEMA.items():
            names = [weight_field_name(p) for p in item.keys] if item.kind is dict else [key]
            yield item, [self[name] for name in names]

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        values = self.values()
        for key, value in values.items():
            try:
                config.validate_value(key, value)
            except ValidationError as exc:
                names = (
                    [weight_field_name(p) for p in config.PRIORITIES] if key == "priority_weights" else [key]
                )
                if exc.code == "all_zero":  # the schema's message is for scripts: say it in words here
                    exc = ValidationError(ALL_ZERO_IN_WORDS, code="all_zero")
                self.add_error(names[0], exc)
        return cleaned

    def values(self) -> dict:
        """The submitted settings as the schema's values (weights back into one object)."""
        data = self.cleaned_data
        values = {}
        for key, item in config.SCHEMA.items():
            if item.kind is dict:
                values[key] = {p: data.get(weight_field_name(p)) for p in item.keys}
            else:
                values[key] = data.get(key)
        return values

    def changed_settings(self) -> list[str]:
        """Keys of the settings this person changed on the page."""
        changed = set(self.changed_data)
        keys = []
        for key, item in config.SCHEMA.items():
            names = {weight_field_name(p) for p in item.keys} if item.kind is dict else {key}
            if names & changed:
                keys.append(key)
        return keys

    def loaded_value(self, key: str):
        """The value of `key` when this person loaded the page (the hidden initial inputs)."""
        item = config.SCHEMA[key]
        if item.kind is dict:
            return {p: self._hidden_initial(weight_field_name(p)) for p in item.keys}
        return self._hidden_initial(key)

    def _hidden_initial(self, name: str):
        field = self.fields[name]
        raw = field.hidden_widget().value_from_datadict(self.data, self.files, self.add_initial_prefix(name))
        try:
            return field.to_python(raw)
        except ValidationError:
            return None  # a tampered hidden input: treat as "someone else changed it"
