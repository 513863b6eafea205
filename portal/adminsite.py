"""The staff admin site and the base class that routes admin writes through services.

The admin never checks a password itself: its login redirects to the portal's sign-in (allauth),
so the failed-login limits, the lockout and the second factor cover staff too. Staff without a
second factor are sent to enrol one when PORTAL_STAFF_REQUIRE_MFA is on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.functional import lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from portal.audit.actors import UserActor
from portal.lib.errors import DomainError
from portal.lib.money import format_minor
from portal.users.selectors import staff_factor_confirmed, staff_factor_waiting


def _site_header() -> str:
    return _("%(site)s · staff") % {"site": settings.PORTAL_SITE_NAME}


def _site_title() -> str:
    return _("%(site)s staff") % {"site": settings.PORTAL_SITE_NAME}


class PortalAdminSite(admin.AdminSite):
    # The portal's brand (PORTAL_SITE_NAME, translated), in the reader's language.
    site_header = lazy(_site_header, str)()
    site_title = lazy(_site_title, str)()
    index_title = gettext_lazy("Administration")

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        if not settings.PORTAL_STAFF_REQUIRE_MFA:
            return True
        # A first factor enrolled with the password alone counts once confirmed by email.
        return bool(is_mfa_enabled(user)) and staff_factor_confirmed(user=user)

    def get_app_list(
        self, request: HttpRequest, app_label: str | None = None
    ) -> list[dict[str, Any]]:
        """The index's and the sidebar's apps. A model admin with `index_add_url(request)` sends
        the model's "Add" link there (a bill run is started on its own page, not added)."""
        apps = super().get_app_list(request, app_label)
        for app in apps:
            for model in app["models"]:
                model_admin = self._registry.get(model["model"])
                add_url = getattr(model_admin, "index_add_url", None)
                if add_url is not None and (url := add_url(request)) is not None:
                    model["add_url"] = url
        return apps

    def login(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        next_url = request.GET.get(REDIRECT_FIELD_NAME, "")
        if not url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            next_url = ""
        next_url = next_url or reverse("admin:index", current_app=self.name)
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(next_url, login_url=reverse("account_login"))
        if self.has_permission(request):
            return HttpResponseRedirect(next_url)
        if user.is_staff and user.is_active:
            if staff_factor_waiting(user=user):
                messages.warning(
                    request,
                    _(
                        "Confirm your new second factor with the link we emailed to %(email)s "
                        "before you open the admin site."
                    )
                    % {"email": user.email},
                )
            else:
                messages.warning(
                    request, _("Staff need two-factor authentication to open the admin site.")
                )
            return HttpResponseRedirect(reverse("mfa_index"))
        raise PermissionDenied


class ServiceModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A ModelAdmin whose saves and deletions go through the app's services.

    Subclasses implement `service_save` (and `service_delete` if deletion is allowed); the
    services validate, write and record the audit entry in one transaction, exactly as they do
    for the portal. Bulk deletion is switched off: each deletion must be its own audited change.
    """

    actions = None

    def actor(self, request: HttpRequest) -> UserActor:
        return UserActor.from_request(request)

    def service_save(
        self, request: HttpRequest, obj: Any, form: ModelForm[Any], change: bool
    ) -> Any:
        raise NotImplementedError

    def service_delete(self, request: HttpRequest, obj: Any) -> None:
        raise PermissionDenied

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        saved = self.service_save(request, obj, form, change)
        # The admin goes on to use `obj` (its pk for the redirect and the change message).
        if saved is not None and saved is not obj:
            obj.pk = saved.pk
            obj.__dict__.update({k: v for k, v in saved.__dict__.items() if not k.startswith("_")})

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # Many-to-many data is saved by service_save; inlines are not used with services.
        return None

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as error:
            messages.error(request, str(error.message))
            return HttpResponseRedirect(request.get_full_path())

    def service_view(self, request: HttpRequest, obj: Any) -> None:
        """Audit staff opening a record of personal data; models without any do nothing."""
        return

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            obj = self.get_object(request, unquote(object_id))
            if obj is not None:
                self.service_view(request, obj)
        return response

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except DomainError as error:
            messages.error(request, str(error.message))
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.service_delete(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            self.service_delete(request, obj)


def changed(form: ModelForm[Any], fields: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return {field: new value} for the form's changed fields among `fields`."""
    return {name: form.cleaned_data[name] for name in fields if name in form.changed_data}


class ReadOnlyModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Viewable by staff with the view permission; nobody adds, changes or deletes here.

    A subclass may list actions of its own (each a service call); none are offered by default.
    """

    actions: Sequence[Any] | None = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def money_display(
    field: str, description: str | Any, *, currency: str = "currency"
) -> Callable[[Any, Any], str]:
    """An admin column or read-only field showing `field`, whole minor units, as money with its
    currency ("603.18 TWD", never 60318). `currency` is the path from the object to its
    currency code, e.g. "bill.currency" for a bill line.

    Assign it in the ModelAdmin's class body and name that attribute where the raw field would
    be named; tests/billing/test_admin_money.py fails for an admin that shows a money field raw.
    """

    @admin.display(description=description, ordering=field)
    def show(model_admin: Any, obj: Any) -> str:
        minor = getattr(obj, field)
        if minor is None:
            return "-"
        code = obj
        for part in currency.split("."):
            code = getattr(code, part)
        return format_minor(minor, code)

    show.__name__ = f"{field}_money"
    return show
