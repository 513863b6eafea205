"""Audit scenarios of billing.services.exports (merged by tests/portal/test_audit_per_service)."""

from __future__ import annotations

from collections.abc import Callable

from django.utils import timezone

from billing.services import exports
from portal.audit.events import AuditEvent
from tests.conftest import World
from tests.factories import SYSTEM


def _request(world: World) -> Callable[[], object]:
    return lambda: exports.export_request(
        account=world.account_a, actor=SYSTEM, as_of=timezone.now()
    )


def _build(world: World) -> Callable[[], object]:
    export = exports.export_request(account=world.account_a, actor=SYSTEM, as_of=timezone.now())
    return lambda: exports.export_build(export_id=export.pk, actor=SYSTEM, as_of=timezone.now())


def _download(world: World) -> Callable[[], object]:
    export = exports.export_request(account=world.account_a, actor=SYSTEM, as_of=timezone.now())
    built = exports.export_build(export_id=export.pk, actor=SYSTEM, as_of=timezone.now())
    assert built is not None
    return lambda: exports.export_download_record(export=built, actor=SYSTEM)


SCENARIOS: dict[str, tuple[Callable[[World], Callable[[], object]], AuditEvent]] = {
    "billing.services.exports.export_request": (_request, AuditEvent.DATA_EXPORT_REQUESTED),
    # One entry when the build ends, ready or failed.
    "billing.services.exports.export_build": (_build, AuditEvent.DATA_EXPORT_FINISHED),
    "billing.services.exports.export_download_record": (
        _download,
        AuditEvent.DATA_EXPORT_DOWNLOADED,
    ),
}

EXEMPT: dict[str, str] = {
    "billing.services.exports.exports_sweep": (
        "retention housekeeping: deletes the files of exports whose audited lifetime ended and "
        "hands stalled ones to a worker again"
    ),
}
