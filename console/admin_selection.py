"""A list's action, POSTed with a row id that is not an id, is refused with a message.

Django filters the queryset by the posted ids before any action runs; an id that its primary
key cannot read (`not-a-uuid` for a UUID, `abc` for an integer: a hand-made or tampered POST)
made that filter raise, a 500 on every list of the site — ours, django-q2's, auth's, axes'.
The site wraps every registered list in `guard_selection` (SidecarAdminSite.get_urls), so a
list added later is covered too.
"""

from django.contrib import messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect


def malformed_ids(model, posted: list[str]) -> list[str]:
    """The posted ids that `model`'s primary key cannot read."""
    bad = []
    for value in posted:
        try:
            model._meta.pk.to_python(value)
        except (ValidationError, ValueError, TypeError):
            bad.append(value)
    return bad


def guard_selection(model_admin) -> None:
    """Make `model_admin`'s list refuse malformed selections before Django touches them."""
    if getattr(model_admin, "_selection_guarded", False):
        return
    changelist_view = model_admin.changelist_view

    def guarded_changelist_view(request, extra_context=None):
        if request.method == "POST":
            bad = malformed_ids(model_admin.model, request.POST.getlist(helpers.ACTION_CHECKBOX_NAME))
            if bad:
                model_admin.message_user(
                    request,
                    f"The selection is not valid ({len(bad):,} malformed "
                    f"{model_admin.model._meta.verbose_name} id{'s' if len(bad) > 1 else ''}, "
                    f"e.g. {bad[0][:40]!r}); nothing was changed.",
                    messages.ERROR,
                )
                return HttpResponseRedirect(request.get_full_path())
        return changelist_view(request, extra_context)

    model_admin.changelist_view = guarded_changelist_view
    model_admin._selection_guarded = True
