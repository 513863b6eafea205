"""English: the day before the month, the month named, and the 24-hour clock."""

DATE_FORMAT = "j F Y"  # 3 December 2026
SHORT_DATE_FORMAT = "j M Y"  # 3 Dec 2026
DATETIME_FORMAT = "j F Y, H:i"  # 3 December 2026, 13:25
SHORT_DATETIME_FORMAT = "j M Y, H:i"  # 3 Dec 2026, 13:25
TIME_FORMAT = "H:i"  # 13:25
YEAR_MONTH_FORMAT = "F Y"  # December 2026
MONTH_DAY_FORMAT = "j F"  # 3 December
DECIMAL_SEPARATOR = "."
THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
