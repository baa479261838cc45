"""Form fields for documents that refuse input Django's own fields would turn into a 500."""

from django import forms
from django.forms.fields import InvalidJSONInput

from documents.validators import MAX_METADATA_DEPTH


class MetadataJSONField(forms.JSONField):
    """Django's JSON form field, except that JSON nested too deeply to parse is a form error.

    `json.loads` recurses once per level and raises RecursionError (not JSONDecodeError, the
    only error Django's field catches) somewhere below 1,000 levels, so a pasted
    `[[[[…]]]]` was a 500 on the document's page. Shallower nesting parses and is then
    refused by the model's own check (at most MAX_METADATA_DEPTH levels). The error code is
    not the model's "too_deep": a ModelForm would put this message in place of that one.
    """

    default_error_messages = {
        **forms.JSONField.default_error_messages,
        "too_deep_to_parse": f"Metadata nests too deeply to read; it may nest at most {MAX_METADATA_DEPTH} levels.",
    }

    def to_python(self, value):
        try:
            return super().to_python(value)
        except RecursionError:
            raise forms.ValidationError(
                self.error_messages["too_deep_to_parse"], code="too_deep_to_parse"
            ) from None

    def bound_data(self, data, initial):
        # The form is shown again with what was typed; re-reading it must not recurse either.
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return InvalidJSONInput(data)

    def has_changed(self, initial, data):
        try:
            return super().has_changed(initial, data)
        except RecursionError:
            return True
