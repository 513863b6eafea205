"""Bill numbers and payment references.

- **Numbers**: one `BillSequence` row per issuer (an organisation; households without one
  share the utility's row, organisation empty), locked `FOR UPDATE` inside the issuing
  transaction: a concurrent issue waits, a rolled-back one gives its numbers back, so numbers
  have no gaps. The printed number is `<prefix>-<year of issue>-<sequence>` (`HR-2026-000123`),
  unique across issuers: an organisation's prefix is kept on its row (derived from its name
  when its first bill is numbered), the households' comes from `BILLING_HOUSEHOLD_BILL_PREFIX`.
  A credit note takes the next number of the same series. Each number comes with a payment
  reference (account number, bill number, check character) that a transfer quotes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils.translation import gettext_lazy as _

from billing.exceptions import BillError

# --- Numbers and payment references ------------------------------------------------------------

# Serialises the creation of issuers' sequence rows, so that two new issuers never derive the
# same prefix (taken only when an issuer's first bill is numbered).
_PREFIX_LOCK = 0x6269_6C6C  # "bill"


@dataclass(frozen=True)
class _ToNumber:
    """A draft bill to number: its issuer, and what its number and reference are made of."""

    bill_id: int
    organisation_id: int | None
    account_number: str
    time_zone: str


def bill_number_format(*, prefix: str, year: int, sequence_number: int) -> str:
    """The printed bill number: `HR-2026-000123` (six digits at least, more when needed)."""
    return f"{prefix}-{year}-{sequence_number:06d}"


_ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _check_character(body: str) -> str:
    """The Luhn mod 36 check character of `body` (digits and capital letters): it catches every
    single mistyped character and nearly every swap of two neighbours. (Luhn's mod 10 over
    letters spelt as two digits, as account numbers' check digit does for digits, missed one
    mistyped letter in thirteen.)"""
    n = len(_ALPHANUMERIC)
    total = 0
    for index, char in enumerate(reversed(body)):
        value = _ALPHANUMERIC.index(char) * (2 if index % 2 == 0 else 1)
        total += value // n + value % n
    return _ALPHANUMERIC[-total % n]


def bill_payment_reference(*, account_number: str, bill_number: str) -> str:
    """The reference a payer quotes with a transfer: the letters and digits of the account
    number, then of the bill number, then a check character. Unique, since the bill number
    is; the account number in it still finds the payer when the rest is mistyped."""
    body = re.sub(r"[^0-9A-Z]", "", f"{account_number}{bill_number}".upper())
    return body + _check_character(body)


def bill_payment_reference_valid(reference: str) -> bool:
    """Whether `reference` (spaces and case aside) ends in its own check character."""
    compact = re.sub(r"\s", "", reference).upper()
    if not re.fullmatch(r"[0-9A-Z]{2,}", compact):
        return False
    return _check_character(compact[:-1]) == compact[-1]


def _derived_prefix(name: str, organisation_id: int, taken: set[str]) -> str:
    """An organisation's prefix from its name: the initials (Harbour Residential: HR), a
    one-word name's first three letters, `ORG<id>` for a name without Latin letters; a
    prefix already taken gets 2, 3, ... after it."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    words = re.findall(r"[A-Za-z0-9]+", ascii_name)
    base = words[0][:3] if len(words) == 1 else "".join(word[0] for word in words)[:4]
    base = base.upper() or f"ORG{organisation_id}"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}{n}", n + 1
    return candidate


def _create_sequences(cursor: Any, organisation_ids: Sequence[int | None]) -> None:
    """Create the missing sequence rows of these issuers, with a prefix each (race-safe)."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PREFIX_LOCK])
    cursor.execute("SELECT prefix FROM billing_billsequence WHERE prefix <> ''")
    taken = {prefix for (prefix,) in cursor.fetchall()} | {settings.BILLING_HOUSEHOLD_BILL_PREFIX}
    cursor.execute(
        "SELECT id, name FROM tenancy_organisation WHERE id = ANY(%s) ORDER BY id",
        [[o for o in organisation_ids if o is not None]],
    )
    rows: list[tuple[int | None, str]] = []
    for organisation_id, name in cursor.fetchall():
        prefix = _derived_prefix(name, organisation_id, taken)
        taken.add(prefix)
        rows.append((organisation_id, prefix))
    if None in organisation_ids:
        rows.append((None, ""))  # households: the prefix is the setting's, read at issue
    cursor.execute(
        "INSERT INTO billing_billsequence (organisation_id, prefix, next_number) "
        "SELECT o, p, 1 FROM unnest(%s::bigint[], %s::text[]) AS t(o, p) "
        "ON CONFLICT DO NOTHING",
        [[o for o, _ in rows], [p for _, p in rows]],
    )


def _take_numbers(organisation_ids: Sequence[int | None]) -> list[tuple[str, int]]:
    """Reserve one (prefix, number) per entry of `organisation_ids` (in that order), gap-free.

    The sequence rows are created race-safely on first use and locked until the caller's
    transaction ends: a concurrent issuer waits, and a rollback gives the numbers back.

    :raises BillError: when an issuer's sequence row cannot be created (its derived prefix
        taken meanwhile by a row made outside this function).
    """
    wanted = sorted(set(organisation_ids), key=lambda o: (o is not None, o or 0))
    select = """
        SELECT id, organisation_id, prefix, next_number FROM billing_billsequence
        WHERE organisation_id = ANY(%s) OR (%s AND organisation_id IS NULL)
        ORDER BY id
    """
    params: list[Any] = [[o for o in wanted if o is not None], None in wanted]
    with connection.cursor() as cursor:
        cursor.execute(select, params)
        found = {org for _id, org, _prefix, _next in cursor.fetchall()}
        if missing := [o for o in wanted if o not in found]:
            _create_sequences(cursor, missing)
        cursor.execute(select + " FOR UPDATE", params)
        sequences = {org: [seq_id, prefix, nxt] for seq_id, org, prefix, nxt in cursor.fetchall()}
        if len(sequences) != len(wanted):
            raise BillError(_("A bill number series could not be created; try again."))
        numbers = []
        for org in organisation_ids:
            prefix = settings.BILLING_HOUSEHOLD_BILL_PREFIX if org is None else sequences[org][1]
            numbers.append((prefix, sequences[org][2]))
            sequences[org][2] += 1
        cursor.execute(
            "UPDATE billing_billsequence s SET next_number = v.n "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, n) WHERE s.id = v.id",
            [[s[0] for s in sequences.values()], [s[2] for s in sequences.values()]],
        )
    return numbers
