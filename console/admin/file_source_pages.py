"""Attaching files (a folder, a bucket, web pages), and a file source's own page.

"Attach files" (the add page with `?kind=files`) first asks which kind (a GET, like the table
page: the page reloads with that kind's fields; no script needed), then the name, priority,
where the files are, whether to remove the documents of files that are gone, and how often to
sync. **Attach** calls `file_sources.attach`, sets the schedule and queues the first sync: a
worker lists, reads and parses the files, never the web request. A file source's change page
edits how often it syncs and its priority, and queues a sync now; the rest is shown as it is.
Whatever the services refuse shows on the form, and nothing is written.
"""

import re

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy

from documents.models import Source
from documents.priority import Priority
from documents.validators import validate_source_name
from queue_admin import file_sources
from queue_admin.sources import SourceError

KINDS = (Source.Kind.UPLOADS, Source.Kind.FOLDER, Source.Kind.S3, Source.Kind.URLS)
# An uploads source syncs when files are uploaded to it: no schedule, and nothing is ever gone
# from it that was not removed on purpose.
NOT_FOR_UPLOADS = ("remove_missing", "sync_minutes")
KIND_HELP = {
    Source.Kind.UPLOADS: "files, or .zip archives of them, uploaded on its page in the admin",
    Source.Kind.FOLDER: "on the server's disk (a mounted share), read by the workers; superusers only",
    Source.Kind.S3: "a prefix on AWS S3, MinIO, Cloudflare R2, GCS interoperability or another S3-compatible store",
    Source.Kind.URLS: "listed one by one, or every page of a sitemap",
}
KIND_FIELDS = {
    Source.Kind.UPLOADS: (),
    Source.Kind.FOLDER: ("path", "include", "exclude"),
    Source.Kind.S3: ("uri", "endpoint_url", "region"),
    Source.Kind.URLS: ("urls", "sitemap"),
}
SYNC_MINUTES_HELP = (
    "1 to 10,080 (7 days). Empty: it syncs only when asked (the Resync action, Sync now on its page, "
    "or <code>manage.py source sync</code>)."
)
GLOBS_HELP = (
    "Shell globs, separated by commas or new lines, matched against the path inside the folder or the "
    "file name (<code>*</code> also crosses folders)."
)


class KindForm(forms.Form):
    kind = forms.ChoiceField(
        label=gettext_lazy("What to attach"),
        choices=[(kind.value, f"{kind.label} — {KIND_HELP[kind]}") for kind in KINDS],
        widget=forms.RadioSelect,
    )


class SyncSettingsForm(forms.Form):
    """What may change on a file source's page: how often it syncs, and its priority."""

    sync_minutes = forms.IntegerField(
        label=gettext_lazy("Sync every (minutes)"), required=False, help_text=SYNC_MINUTES_HELP
    )
    priority = forms.ChoiceField(
        choices=Priority.choices,
        initial=Priority.MEDIUM,
        help_text=gettext_lazy("The queue priority of this source's documents."),
    )


class FileSourceForm(SyncSettingsForm):
    """A file source of one kind: the fields of the other kinds are left out."""

    field_order = [
        "name", "path", "include", "exclude", "uri", "endpoint_url", "region", "urls", "sitemap",
        "remove_missing", "sync_minutes", "priority",
    ]  # fmt: skip

    name = forms.CharField(
        max_length=100,
        validators=[validate_source_name],
        help_text=gettext_lazy(
            "How commands, search and the API name this source: lowercase letters, digits, - and _."
        ),
    )
    path = forms.CharField(
        label=gettext_lazy("Folder"),
        max_length=4096,
        widget=forms.TextInput(attrs={"size": 60, "placeholder": "/mnt/share/manuals"}),
        help_text=gettext_lazy(
            "The folder's absolute path on the server; every file under it, recursively (hidden files "
            "left out). It must exist and be readable by Sidecar, and lie inside SOURCE_FOLDER_ROOTS when that is "
            "set. Only a superuser may attach a folder: it reads files on the server's disk."
        ),
    )
    include = forms.CharField(
        label=gettext_lazy("Only files matching"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60, "placeholder": "*.pdf, manuals/*.md"}),
        help_text=f"{GLOBS_HELP} Empty: every file.",
    )
    exclude = forms.CharField(
        label=gettext_lazy("Not files matching"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60, "placeholder": "drafts/*"}),
        help_text=GLOBS_HELP,
    )
    uri = forms.CharField(
        label=gettext_lazy("Bucket"),
        max_length=2048,
        widget=forms.TextInput(attrs={"size": 60, "placeholder": "s3://bucket/prefix/"}),
        help_text=gettext_lazy(
            "<code>s3://bucket/prefix</code>: every object under the prefix. The bucket must be listable "
            "with the workers' credentials, which come only from their environment (<code>AWS_ACCESS_KEY_ID</code>, "
            "<code>AWS_SECRET_ACCESS_KEY</code>, or any other boto3 credential source): they are never typed "
            "here, stored or shown."
        ),
    )
    endpoint_url = forms.CharField(
        label=gettext_lazy("Endpoint URL"),
        required=False,
        max_length=2048,
        widget=forms.TextInput(attrs={"size": 60, "placeholder": "http://minio:9000"}),
        help_text=gettext_lazy("For MinIO, Cloudflare R2, GCS interoperability and others. Empty: AWS S3."),
    )
    region = forms.CharField(
        required=False, max_length=64, help_text=gettext_lazy("The bucket's region, e.g. eu-west-1.")
    )
    urls = forms.CharField(
        label=gettext_lazy("URLs"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "cols": 60, "placeholder": "https://example.com/handbook"}),
        help_text=gettext_lazy(
            "One per line, http or https. Loopback, private and link-local addresses are refused "
            "(server-side request forgery guard) unless the host is in SOURCE_URL_ALLOWED_HOSTS."
        ),
    )
    sitemap = forms.CharField(
        label=gettext_lazy("Sitemap URL"),
        required=False,
        max_length=2048,
        widget=forms.TextInput(attrs={"size": 60, "placeholder": "https://example.com/sitemap.xml"}),
        help_text=gettext_lazy(
            "Every page the sitemap lists, read at each sync (instead of, or besides, the URLs above)."
        ),
    )
    remove_missing = forms.BooleanField(
        label=gettext_lazy("Remove documents whose file is gone"),
        required=False,
        initial=True,
        help_text=gettext_lazy("Unticked: the documents of files that disappear from the source are kept."),
    )

    def __init__(self, *args, kind: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        for other, names in KIND_FIELDS.items():
            if other != kind:
                for name in names:
                    del self.fields[name]
        if kind == Source.Kind.UPLOADS:
            for name in NOT_FOR_UPLOADS:
                del self.fields[name]

    def clean_name(self):
        name = self.cleaned_data["name"]
        if Source.objects.filter(name=name).exists():
            raise forms.ValidationError(f"There is already a source named {name!r}.")
        return name

    def clean(self):
        data = super().clean()
        if self.kind == Source.Kind.URLS and not (data.get("urls") or data.get("sitemap")):
            self.add_error("urls", "Give the URLs of the pages, or a sitemap URL.")
        return data

    def attach_arguments(self) -> tuple[list[str], dict]:
        """`file_sources.attach`'s target and keyword arguments, from the cleaned form."""
        data = self.cleaned_data
        if self.kind == Source.Kind.FOLDER:
            target = [data["path"]]
        elif self.kind == Source.Kind.S3:
            target = [data["uri"]]
        elif self.kind == Source.Kind.UPLOADS:
            target = []
        else:
            target = data["urls"].split()  # one per line; a URL has no white space
        return target, {
            "name": data["name"],
            "priority": data["priority"],
            "include": _globs(data.get("include", "")),
            "exclude": _globs(data.get("exclude", "")),
            "endpoint_url": data.get("endpoint_url", ""),
            "region": data.get("region", ""),
            "sitemap": data.get("sitemap", ""),
            "remove_missing": data.get("remove_missing", True),
        }


def _globs(text: str) -> list[str]:
    return [glob.strip() for glob in re.split(r"[,\n]", text) if glob.strip()]


def attach_and_queue_sync(form: FileSourceForm, user) -> Source | None:
    """Attach, schedule and queue the first sync, all or nothing (the task row is in the same
    database, so a worker never sees a sync of a source that was not attached). A refusal goes
    on the form (the interval's on its field) and returns None."""
    target, arguments = form.attach_arguments()
    minutes = form.cleaned_data.get("sync_minutes")
    field = None
    try:
        with transaction.atomic():
            source = file_sources.attach(form.kind, target, **arguments, user=user)
            field = "sync_minutes"
            if minutes:
                file_sources.set_sync_interval(source, minutes)
            field = None
            if source.kind != Source.Kind.UPLOADS:  # nothing uploaded yet, nothing to sync
                file_sources.schedule_sync(source)
    except (SourceError, PermissionDenied) as exc:
        form.add_error(field, str(exc) or "You may not do this.")
        return None
    return source


def save_sync_settings(source: Source, *, minutes: int | None, priority: str) -> None:
    """The schedule first: an interval it refuses leaves the priority as it was too."""
    with transaction.atomic():
        file_sources.set_sync_interval(source, minutes)
        Source.objects.filter(pk=source.pk).update(default_priority=priority)
        source.default_priority = priority


def attach(model_admin, request):
    """Steps: check the permission (403); the kind (a GET parameter); with a POST, validate,
    attach and go back to the list; otherwise the kind choice and that kind's form."""
    if not model_admin.has_add_permission(request):
        raise PermissionDenied
    kind = request.GET.get("kind", "")
    form = None
    if kind in KINDS:
        posted = request.method == "POST"
        form = FileSourceForm(
            request.POST if posted else None, kind=kind, initial={"priority": Priority.MEDIUM}
        )
        if posted and form.is_valid():
            source = attach_and_queue_sync(form, request.user)
            if source is not None and source.kind == Source.Kind.UPLOADS:
                model_admin.message_user(
                    request,
                    f"Attached uploads source {source.name}. Upload its files here.",
                    messages.SUCCESS,
                )
                return redirect("admin:documents_source_upload", source.pk)
            if source is not None:
                model_admin.message_user(
                    request,
                    f"Attached {file_sources.describe(source)} as source {source.name}. A worker syncs its files "
                    "now: this list shows the figures as they grow (reload it).",
                    messages.SUCCESS,
                )
                return redirect("admin:documents_source_changelist")
    context = {
        **model_admin.admin_site.each_context(request),
        "title": gettext_lazy("Attach files"),
        "opts": model_admin.opts,
        "kind_form": KindForm(initial={"kind": kind}),
        "kind": kind,
        "kind_label": Source.Kind(kind).label if form else "",
        "form": form,
    }
    return TemplateResponse(request, "admin/documents/source/file_form.html", context)


def edit(model_admin, request, source: Source):
    """A file source's change page: the facts, the sync settings form, and Sync now."""
    if request.method == "POST" and "_sync_now" in request.POST:
        try:
            file_sources.schedule_sync(source)
        except SourceError as exc:
            model_admin.message_user(request, f"Could not sync {source.name}: {exc}", messages.ERROR)
        else:
            model_admin.message_user(
                request,
                f"Syncing {source.name}: a worker reads its new and changed files now (reload this page to follow "
                "it).",
                messages.SUCCESS,
            )
        return redirect(request.path)
    initial = {"sync_minutes": source.options.get("sync_minutes"), "priority": source.default_priority}
    posted = request.method == "POST"
    form = SyncSettingsForm(request.POST if posted else None, initial=initial)
    if source.kind == Source.Kind.UPLOADS:
        del form.fields["sync_minutes"]  # it syncs when files are uploaded
    if posted and form.is_valid():
        try:
            save_sync_settings(
                source, minutes=form.cleaned_data.get("sync_minutes"), priority=form.cleaned_data["priority"]
            )
        except SourceError as exc:
            form.add_error("sync_minutes", str(exc))
        else:
            model_admin.message_user(request, f"Saved {source.name}.", messages.SUCCESS)
            return redirect("admin:documents_source_changelist")
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Source {source.name}",
        "opts": model_admin.opts,
        "original": source,
        "editing": source,
        "facts": [
            ("Kind", model_admin.kind_label(source)),
            ("Reads", model_admin.reads(source)),
            ("State", _state(source)),
            ("Queueing", model_admin.running(source)),
            ("Last sync", model_admin.last_sync_column(source)),
            ("Last synced", source.last_synced_at or "never"),
            ("Created by", source.created_by or "—"),
            ("Created", source.created_at),
        ],
        "form": form,
        "may_detach": model_admin.has_delete_permission(request, source),
    }
    return TemplateResponse(request, "admin/documents/source/file_form.html", context)


def _state(source: Source) -> str:
    """The state and why (the list's column adds the last sync, a row of its own here)."""
    html = format_html('<span class="sidecar-source-state {}">{}</span>', source.state, source.state)
    if source.state_reason:
        html += format_html(
            '<div class="sidecar-source-reason" id="source-reason">{}</div>', source.state_reason
        )
    return html
