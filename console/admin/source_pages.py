"""Attaching a table, and editing a table source's mapping: one form, two pages.

"Attach a table" (the add page) first asks which table (a GET, so the page reloads with that
table's columns and types; no script needed), then the mapping: name, template, title column,
metadata columns, row filter (superusers only), priority. **Preview** renders a few rows and
estimates what embedding them would take, writing nothing; **Attach** calls
`sources.attach_table`, which installs the triggers and leaves the copy of the existing rows to
a background task. A table source's change page is the same form without the table and name:
saving calls `sources.edit_table`. Whatever the services refuse shows on the form, and nothing
is written.
"""

import json
import re

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy

from documents.models import Source
from documents.priority import Priority
from documents.sources import tables
from documents.sources.tables import TableSourceError
from documents.validators import validate_source_name
from queue_admin import backfill, sources

TEMPLATE_HELP = (
    "What each row becomes, the text that is embedded: column names in braces, e.g. "
    "<code>{title}\\n\\n{body}</code> — written on two lines with an empty line between. A NULL "
    "column renders as empty text; <code>{{</code> and <code>}}</code> are literal braces."
)
FILTER_HELP = (
    "Only rows where this SQL expression is true become documents, e.g. <code>published AND NOT "
    "deleted</code>. Empty: every row."
)
FILTER_SUPERUSERS_ONLY = (
    "Only a superuser may set a row filter: it is SQL that runs inside the application's own writes."
)
SERVICE_ERRORS = (sources.SourceError, TableSourceError, PermissionDenied)


class TableSourceForm(forms.Form):
    """The mapping of a table to documents. Its column choices are the chosen table's."""

    table = forms.CharField(widget=forms.HiddenInput)
    name = forms.CharField(
        max_length=100,
        validators=[validate_source_name],
        help_text=gettext_lazy(
            "How commands, search and the API name this source: lowercase letters, digits, - and _."
        ),
    )
    template = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60, "placeholder": "{title}\n\n{body}"}),
        strip=False,
        help_text=TEMPLATE_HELP,
    )
    title_column = forms.ChoiceField(
        label=gettext_lazy("Title column"),
        required=False,
        help_text=gettext_lazy("Shown as the document's title in lists and search."),
    )
    metadata_columns = forms.MultipleChoiceField(
        label=gettext_lazy("Metadata columns"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=gettext_lazy("Copied into each document's metadata (not embedded)."),
    )
    where = forms.CharField(
        label=gettext_lazy("Row filter"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text=FILTER_HELP,
    )
    priority = forms.ChoiceField(
        choices=Priority.choices,
        initial=Priority.MEDIUM,
        help_text=gettext_lazy("The queue priority of this source's documents."),
    )

    def __init__(self, *args, table: tables.TableInfo, user, editing: Source | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        renderable = [(name, name) for name, column in table.columns.items() if not column.problem]
        self.fields["title_column"].choices = [("", "— none —"), *renderable]
        self.fields["metadata_columns"].choices = [(name, name) for name in table.columns]
        self.may_filter = user.is_superuser
        if not self.may_filter:
            # Shown, not editable. The value is still passed on as posted: the service refuses
            # a filter from anyone else, and that refusal shows on the form.
            self.fields["where"].widget.attrs["disabled"] = True
            self.fields["where"].help_text = f"{FILTER_SUPERUSERS_ONLY} {FILTER_HELP}"
        if editing is not None:
            del self.fields["name"]

    def clean_template(self):
        return self.cleaned_data["template"].replace("\r\n", "\n")

    def clean_where(self):
        # A disabled field is not posted: a non-superuser keeps the filter there was.
        if not self.may_filter and "where" not in self.data:
            return self.initial.get("where", "")
        return self.cleaned_data["where"].replace("\r\n", "\n").strip()

    def clean_name(self):
        name = self.cleaned_data["name"]
        if Source.objects.filter(name=name).exists():
            raise forms.ValidationError(f"There is already a source named {name!r}.")
        return name

    def table_request(self) -> sources.TableRequest:
        data = self.cleaned_data
        return sources.TableRequest(
            table=data["table"],
            template=data["template"],
            title_column=data["title_column"],
            metadata_columns=tuple(data["metadata_columns"]),
            where=data["where"],
        )

    def add_service_error(self, exc: Exception) -> None:
        message = str(exc) or "You may not do this."
        self.add_error("where" if isinstance(exc, PermissionDenied) else None, message)


def suggested_name(table: str) -> str:
    """A valid source name made from the table's, or "" (the person types one)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", table.lower()).strip("-_")[:100]
    return name if re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name or "-") else ""


def attach(model_admin, request):
    """Steps: check the permission (403); find the chosen table (a GET parameter, or the posted
    form's); with a POST, validate, then preview (nothing written) or attach and go back to the
    list; otherwise show the table choice, its columns and the form."""
    if not model_admin.has_add_permission(request):
        raise PermissionDenied
    posted = request.method == "POST"
    chosen = (request.POST if posted else request.GET).get("table", "")
    choices = [
        (tables.quoted_name(schema, name), f"{schema}.{name}") for schema, name in tables.list_tables()
    ]
    table, table_error = _describe(chosen) if chosen else (None, None)
    form = preview = None
    if table is not None:
        initial = {"table": chosen, "name": suggested_name(table.name), "priority": Priority.MEDIUM}
        form = TableSourceForm(
            request.POST if posted else None, initial=initial, table=table, user=request.user
        )
        if posted and form.is_valid():
            wanted = form.table_request()
            try:
                if "_attach" in request.POST:
                    source = sources.attach_table(
                        wanted,
                        name=form.cleaned_data["name"],
                        priority=form.cleaned_data["priority"],
                        user=request.user,
                        copy_now=False,
                    )
                    model_admin.message_user(
                        request,
                        f"Attached {table.qualified_name} as source {source.name}. A worker copies its rows in "
                        "the background (the list shows the progress); then they are embedded.",
                        messages.SUCCESS,
                    )
                    return redirect("admin:documents_source_changelist")
                preview = _preview(sources.plan_table(wanted, user=request.user))
            except SERVICE_ERRORS as exc:
                form.add_service_error(exc)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": gettext_lazy("Attach a table"),
        "opts": model_admin.opts,
        "table_choices": choices,
        "chosen": chosen,
        "table": table,
        "table_error": table_error,
        "form": form,
        "preview": preview,
    }
    return TemplateResponse(request, "admin/documents/source/table_form.html", context)


def edit(model_admin, request, source: Source):
    """A table source's change page: the mapping form (without table and name). Preview renders
    a few rows with the new mapping; Save calls `sources.edit_table`, which re-renders every row
    in the background (only documents whose text changes are embedded again)."""
    options = source.options
    current = _current_name(source)
    table, table_error = _describe(current)
    form = preview = None
    if table is not None:
        initial = {
            "table": current,
            "template": options.get("template", ""),
            "title_column": options.get("title_column", ""),
            "metadata_columns": options.get("metadata_columns", []),
            "where": options.get("where", ""),
            "priority": source.default_priority,
        }
        posted = request.method == "POST"
        form = TableSourceForm(
            request.POST if posted else None, initial=initial, table=table, user=request.user, editing=source
        )
        if posted and form.is_valid():
            try:
                if "_save" in request.POST:
                    model_admin.message_user(request, _save(source, form, request.user), messages.SUCCESS)
                    return redirect("admin:documents_source_changelist")
                if form.cleaned_data["where"] != options.get("where", "") and not request.user.is_superuser:
                    # As edit_table refuses it: not even EXPLAINed for a preview.
                    raise PermissionDenied("Only a superuser may change a row filter.")
                mapping = tables.build_mapping(
                    table,
                    template=form.cleaned_data["template"],
                    title_column=form.cleaned_data["title_column"],
                    metadata_columns=form.cleaned_data["metadata_columns"],
                    where=form.cleaned_data["where"],
                )
                preview = {"rows": _rows(mapping), "figures": None}
            except SERVICE_ERRORS as exc:
                form.add_service_error(exc)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Source {source.name}",
        "opts": model_admin.opts,
        "original": source,
        "editing": source,
        "table": table,
        "table_error": table_error,
        "form": form,
        "preview": preview,
        "may_detach": model_admin.has_delete_permission(request, source),
    }
    return TemplateResponse(request, "admin/documents/source/table_form.html", context)


def _describe(table_name: str):
    """(TableInfo, None), or (None, why not)."""
    try:
        return tables.describe(*tables.parse_table_name(table_name)), None
    except TableSourceError as exc:
        return None, str(exc)


def _current_name(source: Source) -> str:
    """The table's name now (it may have been renamed since it was attached)."""
    oid = source.options.get("oid")
    if oid and tables.table_exists(oid):
        return tables.quoted_name(*tables.names_of(oid))
    return tables.quoted_name(source.options.get("schema", ""), source.options.get("table", ""))


def _preview(mapping: tables.Mapping) -> dict:
    """A few rows as documents, and what embedding all of them would take."""
    figures = tables.measure(mapping)
    return {
        "rows": _rows(mapping),
        "figures": backfill.estimate(backfill.Selection(figures.rows, figures.estimated_tokens)),
    }


def _rows(mapping: tables.Mapping) -> list[dict]:
    """The preview's rows, each with its metadata as an object and as JSON text to show."""
    rows = []
    for row in tables.preview(mapping):
        rows.append({**row, "metadata_text": json.dumps(row["metadata"], ensure_ascii=False)})
    return rows


def _mapping_changed(source: Source, data: dict) -> bool:
    options = source.options

    def fields(values: dict) -> tuple:
        return (
            values.get("template", ""),
            values.get("title_column") or "",
            sorted(values.get("metadata_columns") or []),
            values.get("where") or "",
        )

    return fields(data) != fields(options)


def _save(source: Source, form: TableSourceForm, user) -> str:
    """Re-render only when the mapping changed; a new priority applies to what is queued next
    (with a changed mapping it is saved with it: a refused mapping leaves it as it was).
    Returns the message."""
    data = form.cleaned_data
    changed = _mapping_changed(source, data)
    if changed:
        sources.edit_table(source, form.table_request(), user=user, priority=data["priority"], copy_now=False)
    elif data["priority"] != source.default_priority:
        Source.objects.filter(pk=source.pk).update(default_priority=data["priority"])
    if changed:
        return (
            f"Saved {source.name}. A worker re-renders every row in the background; only documents whose "
            "text changed are embedded again."
        )
    return f"Saved {source.name}."
