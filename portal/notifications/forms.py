"""The notifications page's form: a member's own channels per topic, quiet hours, language."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from portal.audit.actors import Actor
from portal.notifications.models import NotificationPreference
from portal.notifications.services import PHONE_RE, notification_preferences_set
from portal.notifications.topics import OPERATIONAL_TOPICS, OPT_IN_TOPICS, Topic
from portal.users.models import User


class NotificationPreferencesForm(forms.Form):
    """A member's own notification choices: email and SMS per topic, one mobile number and one
    set of quiet hours (stored on every topic's preference, as the sender reads them).

    Quiet hours are the site's default, the member's own (local time of each account), or
    none at all (stored as equal start and end, which the sender reads as "no quiet time").
    """

    QUIET_DEFAULT = "default"
    QUIET_CUSTOM = "custom"
    QUIET_NONE = "none"

    phone = forms.CharField(
        label=_("Mobile number"),
        required=False,
        max_length=20,
        help_text=_("For text messages, in international form, for example +886912345678."),
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "tel"}),
    )
    quiet = forms.ChoiceField(label=_("Quiet hours"), widget=forms.RadioSelect)
    language = forms.ChoiceField(label=_("Language of messages"), required=False)
    quiet_start = forms.TimeField(
        label=_("Quiet from"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    quiet_end = forms.TimeField(
        label=_("Quiet until"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )

    def __init__(
        self,
        *args: Any,
        stored: Mapping[str, NotificationPreference | None],
        language: str,
        viewer: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.stored = stored
        self.stored_language = language
        # A viewer hears meter alarms only once they switch them on (the sender's rule).
        self.viewer = viewer
        language_field = self.fields["language"]
        assert isinstance(language_field, forms.ChoiceField)  # noqa: S101 - declared above
        language_field.choices = [
            ("", _("Every language, in one message")),
            *((code, name) for code, name in settings.LANGUAGES),
        ]
        language_field.initial = language
        default_from, default_until = settings.NOTIFICATION_QUIET_HOURS
        quiet_field = self.fields["quiet"]
        assert isinstance(quiet_field, forms.ChoiceField)  # noqa: S101 - declared above
        quiet_field.choices = [
            (
                self.QUIET_DEFAULT,
                _("The usual quiet hours, %(start)s to %(end)s")
                % {"start": default_from, "end": default_until},
            ),
            (self.QUIET_CUSTOM, _("My own quiet hours")),
            (self.QUIET_NONE, _("None: tell me at any hour")),
        ]
        for topic, label in Topic.choices:
            pref = stored.get(topic)
            self.fields[f"email_{topic}"] = forms.BooleanField(
                label=_("%(topic)s by email") % {"topic": label},
                required=False,
                initial=pref.email if pref else self.default_email(topic),
            )
            self.fields[f"sms_{topic}"] = forms.BooleanField(
                label=_("%(topic)s by text message") % {"topic": label},
                required=False,
                initial=pref.sms if pref else False,
            )
        for name, field in self.fields.items():
            if isinstance(field, forms.BooleanField):
                field.widget.attrs["class"] = "form-check-input"
            elif name == "language":
                field.widget.attrs["class"] = "form-select"
            elif name != "quiet":
                field.widget.attrs["class"] = "form-control"
            if field.help_text:
                field.widget.attrs["aria-describedby"] = f"id_{name}-help"
        known = [p for topic in Topic.values if (p := stored.get(topic))]
        self.fields["phone"].initial = next((p.phone for p in known if p.phone), "")
        first = known[0] if known else None
        if first is None or first.quiet_start is None or first.quiet_end is None:
            self.fields["quiet"].initial = self.QUIET_DEFAULT
        elif first.quiet_start == first.quiet_end:
            self.fields["quiet"].initial = self.QUIET_NONE
        else:
            self.fields["quiet"].initial = self.QUIET_CUSTOM
            self.fields["quiet_start"].initial = first.quiet_start
            self.fields["quiet_end"].initial = first.quiet_end

    def default_email(self, topic: str) -> bool:
        """Whether email is on for a topic the member has not chosen yet."""
        return not ((self.viewer and topic in OPERATIONAL_TOPICS) or topic in OPT_IN_TOPICS)

    def full_clean(self) -> None:
        super().full_clean()
        # Bootstrap shows a field's message only next to an input marked invalid; the input
        # names its message for screen readers.
        for name in self.errors:
            if name in self.fields:
                attrs = self.fields[name].widget.attrs
                attrs["class"] = f"{attrs.get('class', '')} is-invalid".strip()
                described = [self[name].auto_id + "-error"]
                if self.fields[name].help_text:
                    described.append(self[name].auto_id + "-help")
                attrs["aria-describedby"] = " ".join(described)

    def topic_rows(self) -> list[tuple[str, forms.BoundField, forms.BoundField]]:
        """(topic label, email checkbox, SMS checkbox) per topic, for the table."""
        return [
            (str(label), self[f"email_{topic}"], self[f"sms_{topic}"])
            for topic, label in Topic.choices
        ]

    def clean_phone(self) -> str:
        # The service's own normalisation, so that what is checked is what is stored.
        phone = str(self.cleaned_data.get("phone") or "")
        phone = phone.replace(" ", "").replace("-", "").strip()
        if phone and not PHONE_RE.match(phone):
            raise forms.ValidationError(
                _("Give the mobile number in international form, for example +886912345678.")
            )
        return phone

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        wants_sms = any(cleaned.get(f"sms_{topic}") for topic in Topic.values)
        if wants_sms and "phone" in cleaned and not cleaned["phone"]:
            self.add_error("phone", _("Text messages need a mobile number."))
        if cleaned.get("quiet") == self.QUIET_CUSTOM:
            start, end = cleaned.get("quiet_start"), cleaned.get("quiet_end")
            if start is None and "quiet_start" not in self.errors:
                self.add_error("quiet_start", _("Give the time the quiet hours start."))
            if end is None and "quiet_end" not in self.errors:
                self.add_error("quiet_end", _("Give the time the quiet hours end."))
            if start is not None and start == end:
                self.add_error(
                    "quiet_end",
                    _(
                        "The quiet hours cannot start and end at the same time. To be told "
                        "at any hour, choose “None”."
                    ),
                )
        return cleaned

    def _quiet(self) -> tuple[dt.time | None, dt.time | None]:
        quiet = self.cleaned_data["quiet"]
        if quiet == self.QUIET_CUSTOM:
            return self.cleaned_data["quiet_start"], self.cleaned_data["quiet_end"]
        if quiet == self.QUIET_NONE:
            return dt.time(0), dt.time(0)
        return None, None

    def changes(self) -> list[dict[str, Any]]:
        """The service arguments of every topic whose stored choice differs from the form."""
        quiet_start, quiet_end = self._quiet()
        phone = self.cleaned_data["phone"]
        changed = []
        for topic in Topic.values:
            wanted = {
                "topic": topic,
                "email": bool(self.cleaned_data[f"email_{topic}"]),
                "sms": bool(self.cleaned_data[f"sms_{topic}"]),
                "phone": phone,
                "quiet_start": quiet_start,
                "quiet_end": quiet_end,
            }
            pref = self.stored.get(topic)
            # No stored preference: the sender's defaults (email on but for a viewer's alarms,
            # SMS off) apply.
            current = {
                "topic": topic,
                "email": pref.email if pref else self.default_email(topic),
                "sms": pref.sms if pref else False,
                "phone": pref.phone if pref else "",
                "quiet_start": pref.quiet_start if pref else None,
                "quiet_end": pref.quiet_end if pref else None,
            }
            if wanted != current:
                changed.append(wanted)
        return changed

    def save(self, *, user: User, actor: Actor) -> int:
        """Save every changed topic through the service (each audited); all or nothing.
        Return how many topics changed.

        :raises NotificationError: if the service refuses one (the form checks the same rules).
        """
        # A post without the field (an older page) leaves the language as it is.
        language = (self.cleaned_data.get("language") or "") if "language" in self.data else None
        return notification_preferences_set(
            user=user,
            changes=self.changes(),
            language=None if language == self.stored_language else language,
            actor=actor,
        )
