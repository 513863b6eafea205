"""Give the bills issued before 0005 their printed number and payment reference, and each
organisation's series its prefix. The rules are copied from billing.services.bill_numbers (a
migration never imports app code); bills keep their place in their series."""

import re
import unicodedata
import zoneinfo

from django.conf import settings
from django.db import migrations


def _derived_prefix(name, organisation_id, taken):
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    words = re.findall(r"[A-Za-z0-9]+", ascii_name)
    base = words[0][:3] if len(words) == 1 else "".join(word[0] for word in words)[:4]
    base = base.upper() or f"ORG{organisation_id}"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}{n}", n + 1
    return candidate


_ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _check_character(body):
    n = len(_ALPHANUMERIC)
    total = 0
    for index, char in enumerate(reversed(body)):
        value = _ALPHANUMERIC.index(char) * (2 if index % 2 == 0 else 1)
        total += value // n + value % n
    return _ALPHANUMERIC[-total % n]


def _reference(account_number, bill_number):
    body = re.sub(r"[^0-9A-Z]", "", f"{account_number}{bill_number}".upper())
    return body + _check_character(body)


def backfill(apps, schema_editor):
    BillSequence = apps.get_model("billing", "BillSequence")
    Bill = apps.get_model("billing", "Bill")
    Organisation = apps.get_model("tenancy", "Organisation")
    household = getattr(settings, "BILLING_HOUSEHOLD_BILL_PREFIX", "RES")
    taken = {household} | set(BillSequence.objects.exclude(prefix="").values_list("prefix", flat=True))
    prefixes = {None: household}
    for sequence in BillSequence.objects.filter(organisation__isnull=False).order_by("pk"):
        if not sequence.prefix:
            name = Organisation.objects.get(pk=sequence.organisation_id).name
            sequence.prefix = _derived_prefix(name, sequence.organisation_id, taken)
            taken.add(sequence.prefix)
            sequence.save(update_fields=["prefix"])
        prefixes[sequence.organisation_id] = sequence.prefix
    bills = Bill.objects.filter(sequence_number__isnull=False, number="")
    for bill in bills.select_related("account").order_by("pk").iterator():
        if bill.organisation_id not in prefixes:  # numbered before its series row existed
            name = Organisation.objects.get(pk=bill.organisation_id).name
            prefixes[bill.organisation_id] = _derived_prefix(name, bill.organisation_id, taken)
            taken.add(prefixes[bill.organisation_id])
        issued = bill.issued_at or bill.created_at
        year = issued.astimezone(zoneinfo.ZoneInfo(bill.account.time_zone)).year
        bill.number = f"{prefixes[bill.organisation_id]}-{year}-{bill.sequence_number:06d}"
        bill.payment_reference = _reference(bill.account.number, bill.number)
        bill.save(update_fields=["number", "payment_reference"])


def forget(apps, schema_editor):
    Bill = apps.get_model("billing", "Bill")
    Bill.objects.update(number="", payment_reference="")


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0005_bill_numbers"),
    ]

    operations = [
        migrations.RunPython(backfill, forget),
    ]
