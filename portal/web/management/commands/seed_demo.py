"""manage.py seed_demo: load the demo organisations, households and logins (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from portal.audit.actors import SystemActor
from portal.web.demo import demo_seed


class Command(BaseCommand):
    help = "Create the demo group, subsidiaries, households and logins; safe to run again."

    def handle(self, *args: Any, **options: Any) -> None:
        result = demo_seed(actor=SystemActor("command:seed_demo"))
        self.stdout.write(f"Demo data: {result.created} objects created.")
        width = max(len(email) for email, _, _ in result.logins)
        self.stdout.write("Logins (all with the same demo password):")
        for email, password, what in result.logins:
            self.stdout.write(f"  {email.ljust(width)}  {password}  {what}")
