"""The custom user: people sign in with their email address."""

from __future__ import annotations

from typing import Any, ClassVar

from allauth.mfa.models import Authenticator
from allauth.usersessions.models import UserSession
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra: Any) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person: a resident, a corporate member, or a member of the utility's staff.

    `is_staff` and Django groups are for the utility's back office only; what a person may see
    of customer data comes from tenancy memberships, never from these flags.
    """

    email = models.EmailField(_("email address"), max_length=254, unique=True)
    name = models.CharField(_("name"), max_length=150, blank=True)
    is_staff = models.BooleanField(
        _("staff status"),
        default=False,
        help_text=_("Utility staff who may sign in to the admin site."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)
    # A code of settings.LANGUAGES; empty: messages in every language, as before it existed.
    language = models.CharField(_("language of messages"), max_length=16, blank=True, default="")

    objects: ClassVar[UserManager] = UserManager()

    EMAIL_FIELD = "email"
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(email=Lower("email")), name="users_user_email_lower"
            ),
        ]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        super().clean()
        self.email = self.__class__.objects.normalize_email(self.email).lower()

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name or self.email


class SignInSession(UserSession):  # type: ignore[misc]
    """allauth's record of a signed-in browser, as the admin lists it: allauth's model names
    are not translatable, this proxy's are."""

    class Meta:
        proxy = True
        verbose_name = _("sign-in session")
        verbose_name_plural = _("sign-in sessions")


class SecondFactor(Authenticator):  # type: ignore[misc]
    """allauth's authenticator (app, recovery codes, security key), as the admin lists it."""

    class Meta:
        proxy = True
        verbose_name = _("second factor")
        verbose_name_plural = _("second factors")


class StaffFactorApproval(models.Model):
    """A staff member's first second factor, held until it is confirmed from their mailbox.

    The admin needs a second factor, but whoever holds a staff password could otherwise enrol
    one and walk in. So the first factor a staff member adds counts only once the link emailed
    to their address is opened while signed in as them: the password alone is not enough.
    """

    user = models.ForeignKey(
        "users.User", on_delete=models.CASCADE, related_name="+", verbose_name=_("user")
    )
    authenticator = models.OneToOneField(
        Authenticator,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("second factor"),
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(_("created"))
    confirmed_at = models.DateTimeField(_("confirmed"), null=True, blank=True)

    class Meta:
        verbose_name = _("staff second factor confirmation")
        verbose_name_plural = _("staff second factor confirmations")

    def __str__(self) -> str:
        return f"{self.user} {self.authenticator.type}"
