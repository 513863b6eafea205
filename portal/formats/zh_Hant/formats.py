"""Traditional Chinese: Django's dates (2026年12月3日 13:25), numbers grouped as in English."""

DECIMAL_SEPARATOR = "."
THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
