"""The notifications page: a member's own choices of how they are told, per topic."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext as _

from portal.notifications.forms import NotificationPreferencesForm
from portal.notifications.selectors import notification_preference_for
from portal.notifications.services import NotificationError
from portal.notifications.topics import Topic
from portal.tenancy.roles import Role
from portal.tenancy.scopes import Scope
from portal.tenancy.selectors import Audience, members_to_notify
from portal.tenancy.views.base import AccountView


class AccountNotificationsView(AccountView):
    """The signed-in member's own notification choices (email/SMS per topic, quiet hours).

    Every member may manage their own (meters:read, the scope every role has): the page
    changes nothing of the account, only how its notices reach this person. The choices
    belong to the person, not to the account, so they apply to each of their accounts.
    """

    required_scope = Scope.METERS_READ
    method_scopes = {"POST": Scope.METERS_READ}
    template_name = "notifications/notifications.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._page(self._form())

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = self._form(request.POST)
        if form.is_valid():
            try:
                changed = form.save(user=self.user, actor=self.actor())
            except NotificationError as error:
                form.add_error(None, str(error.message))
            else:
                messages.success(
                    request,
                    _("Your notification choices are saved.") if changed else _("Nothing changed."),
                )
                return HttpResponseRedirect(
                    reverse(
                        "billing:account_notifications",
                        kwargs={"account_id": self.account.public_id},
                    )
                )
        return self._page(form, status=400)

    def _form(self, data: Any = None) -> NotificationPreferencesForm:
        return NotificationPreferencesForm(
            data,
            stored=self._stored(),
            language=self.user.language,
            viewer=self._viewer_here(),
        )

    def _viewer_here(self) -> bool:
        # A viewer hears meter alarms only for topics they switched on (MEMBERS_TO_NOTIFY_SQL
        # gives each person's highest role on the account and the organisations above it).
        roles = dict(members_to_notify(account_id=self.account.pk, audience=Audience.EVERYONE))
        return roles.get(self.user.pk) == Role.VIEWER

    def _stored(self) -> dict[str, Any]:
        return {
            topic: notification_preference_for(user_id=self.user.pk, topic=topic)
            for topic in Topic.values
        }

    def _told_here(self) -> bool:
        """Whether the member hears this account's low-credit warnings and bill notices."""
        return any(
            user_id == self.user.pk
            for audience in (Audience.ACCOUNT, Audience.ESCALATION)
            for user_id, _role in members_to_notify(account_id=self.account.pk, audience=audience)
        )

    def _page(self, form: NotificationPreferencesForm, status: int = 200) -> HttpResponse:
        return self.render_to_response(
            self.get_context_data(
                form=form,
                told_here=self._told_here(),
                viewer=form.viewer,
            ),
            status=status,
        )
