"""How dates, times and numbers are written on pages, per language (FORMAT_MODULE_PATH).

Django's own formats apply where these modules say nothing. Numbers are written the same way
in every language: digits grouped by three with a comma, a point before the decimals (as
Taiwan writes them too; Django's zh_Hant default groups by four without a separator, so
1192.8 in Chinese was 1,192.8 in English). Dates name the month or use 年月日, so a day is
never read as a month, and times use the 24-hour clock in both languages.
"""
