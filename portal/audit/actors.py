"""Who performs a change, and from where: the required `actor=` of every service.

Views build a `UserActor` from the request; tasks and commands pass a `SystemActor`. The request
context (client address, request id) travels inside the actor, so services never look at the
request and need no thread-local state.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.http import HttpRequest

    from portal.users.models import User


@dataclass(frozen=True)
class RequestContext:
    """Where a change came from: the client address and the id shared by one request's entries."""

    ip: str | None = None
    request_id: uuid.UUID | None = None

    @classmethod
    def from_request(cls, request: HttpRequest) -> RequestContext:
        """Read the values RequestContextMiddleware attached to the request."""
        return cls(
            ip=getattr(request, "client_ip", None),
            request_id=getattr(request, "request_id", None),
        )


@dataclass(frozen=True)
class UserActor:
    """A signed-in person: a member in the portal or a staff user in the admin."""

    user: User
    context: RequestContext = field(default_factory=RequestContext)

    @property
    def label(self) -> str:
        return self.user.email

    @property
    def user_id(self) -> int | None:
        return self.user.pk

    @classmethod
    def from_request(cls, request: HttpRequest) -> UserActor:
        """Build the actor for the request's authenticated user."""
        from portal.users.models import User

        user = request.user
        if not isinstance(user, User):
            raise TypeError("UserActor.from_request needs an authenticated request")
        return cls(user=user, context=RequestContext.from_request(request))


@dataclass(frozen=True)
class SystemActor:
    """A task, command or receiver acting on its own, e.g. `task:tenancy.invitations_expire`."""

    name: str
    context: RequestContext = field(default_factory=RequestContext)

    @property
    def label(self) -> str:
        return self.name

    @property
    def user_id(self) -> int | None:
        return None


@dataclass(frozen=True)
class ApiKeyActor:
    """A machine holding an organisation's API key (a head-end system, a ChirpStack server).

    `key_prefix` is the key's public prefix, never the secret: enough to find the key again.
    """

    key_prefix: str
    organisation_name: str
    context: RequestContext = field(default_factory=RequestContext)

    @property
    def label(self) -> str:
        return f"api-key:{self.key_prefix} ({self.organisation_name})"

    @property
    def user_id(self) -> int | None:
        return None


Actor = UserActor | SystemActor | ApiKeyActor
