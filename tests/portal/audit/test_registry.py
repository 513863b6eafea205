from __future__ import annotations

from portal.audit.events import AUDIT_EVENTS, DOMAIN_RANGES, AuditEvent, event_display


def test_every_event_has_a_spec() -> None:
    assert set(AUDIT_EVENTS) == set(AuditEvent)


def test_api_names_are_unique_and_dotted() -> None:
    names = [spec.api_name for spec in AUDIT_EVENTS.values()]
    assert len(names) == len(set(names))
    assert all("." in name and name == name.lower() for name in names)


def test_every_event_lies_in_its_domain_range() -> None:
    prefixes = {
        "tenancy": ("organisation.", "account.", "member.", "invitation.", "access.", "api_key."),
        "users": ("user.",),
        "privacy": ("data_export.",),
        "auth": ("auth.",),
        "meters": ("import.", "reading.", "meter_event.", "meter_command.", "supply.", "fleet."),
        "billing": (
            "wallet.",
            "prepaid.",
            "ledger.",
            "supply.",
            "topup.",
            "bill.",
            "bill_run.",
            "bill_notice.",
            "shortage.",
            "warning_policy.",
            "notification_preference.",
            "tariff.",
            "holiday.",
        ),
    }
    for event, spec in AUDIT_EVENTS.items():
        domain = next(d for d, r in DOMAIN_RANGES.items() if event.value in r)
        assert spec.api_name.startswith(prefixes[domain]), (event, domain)


def test_display_fills_the_template_and_survives_missing_keys() -> None:
    text = event_display(
        AuditEvent.MEMBER_ROLE_CHANGED,
        {"email": "a@example.com", "old_role": "viewer", "role": "payer"},
    )
    assert text == "changed the role of a@example.com from Viewer to Payer"
    assert "{email}" in event_display(AuditEvent.MEMBER_ADDED, {})
    assert event_display(999, None) == "event 999"
