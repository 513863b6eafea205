"""What the page walk checks: every tenant page found in the URLconf, untranslated text, width,
and what the browser itself complains about (CSP violations, console errors, page errors).

Untranslated text: every text node of the body (and the accessible names in aria-label, title,
alt and placeholder, and the document title) is collected in the browser; what is data (the
world's names, numbers and codes, e-mail addresses and file names) is taken out, and any
Latin word left of three letters or more is an English UI string, unless it is a unit or an
acronym on the short list below. Content in an element marked with another `lang` (the
language selector's "English") or `translate="no"`, and code samples, are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver
from playwright.sync_api import ConsoleMessage, Page

# Units, currencies, acronyms and names of formats and products that stay Latin in Traditional
# Chinese text (as they do in Taiwanese software: "下載 CSV", "Green Button XML").
LATIN_TOKENS = frozenset(
    {"kWh", "Wh", "TWD", "PDF", "CSV", "ZIP", "API", "XML", "JSON", "ESPI", "DSMR", "SMS", "UTC"}
)
PROPER_NAMES = ("Green Button", "ChirpStack", "NAESB", "README.txt", "JavaScript")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_FILE = re.compile(r"[\w-]*\.[a-z]{2,6}\b")  # readings.csv, .ndjson
_WORD = re.compile(r"[A-Za-z]{3,}")

_COLLECT = """
() => {
  const found = [];
  const exempt = el => el.closest('script, style, template, code, kbd, samp, [translate="no"]')
    || (el.closest('[lang]') && !el.closest('[lang]').lang.toLowerCase().startsWith('zh'));
  const where = el => {
    const parts = [];
    for (let e = el; e && e !== document.body && parts.length < 3; e = e.parentElement) {
      parts.unshift(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
        + (e.classList.length ? '.' + [...e.classList].slice(0, 2).join('.') : ''));
    }
    return parts.join(' > ');
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const text = node.textContent.replace(/\\s+/g, ' ').trim();
    if (text && node.parentElement && !exempt(node.parentElement)) {
      found.push([where(node.parentElement), text]);
    }
  }
  for (const el of document.body.querySelectorAll('[aria-label], [title], [alt], [placeholder]')) {
    if (exempt(el)) continue;
    for (const name of ['aria-label', 'title', 'alt', 'placeholder']) {
      const value = el.getAttribute(name);
      if (value && value.trim()) found.push([where(el) + ' @' + name, value.trim()]);
    }
  }
  found.push(['title', document.title]);
  return found;
}
"""


def untranslated(page: Page, data: list[str]) -> list[str]:
    """Return "where: text" for each text on the page with an English word outside data."""
    problems = []
    for where, text in page.evaluate(_COLLECT):
        rest = _FILE.sub(" ", _EMAIL.sub(" ", text))
        for item in (*data, *PROPER_NAMES):  # data longest first
            rest = rest.replace(item, " ")
        words = [w for w in _WORD.findall(rest) if w not in LATIN_TOKENS]
        if words:
            problems.append(f"{where}: {text!r}")
    return problems


# Installed in every page of a context before any of its own scripts: it keeps every CSP
# violation the page causes, whatever directive, including those no console message shows.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(
    `${e.effectiveDirective} blocked ${e.blockedURI || '?'} at ${e.sourceFile || '?'}:` +
    `${e.lineNumber}:${e.columnNumber}` + (e.sample ? ` (${e.sample})` : ''));
});
"""

# Resolves once the tasks already queued have run: a securitypolicyviolation event is queued
# as a task when the violation happens, so this reads them all.
_SETTLE = """
async () => {
  await new Promise((r) => setTimeout(r));
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r)));
  return window.__cspViolations || null;
}
"""


class BrowserComplaints:
    """Console errors and uncaught exceptions of a page, and its CSP violations.

    Attach once per page; `take()` after each navigation returns what that page caused and
    starts afresh.
    """

    def __init__(self, page: Page) -> None:
        self.page = page
        self._messages: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self._messages.append(f"page error: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "assert"):
            where = message.location.get("url", "")
            self._messages.append(f"console {message.type}: {message.text} ({where})")

    def take(self) -> list[str]:
        """Return what the current page caused since the last call.

        Charts are drawn after the page loads: charts.js marks <html data-charts-drawn> once
        every Plotly.newPlot of the page has settled, and violations are read after that.
        """
        if self.page.locator("[data-plotly-figure]").count():
            self.page.wait_for_selector("html[data-charts-drawn]", state="attached")
        violations = self.page.evaluate(_SETTLE)
        found = list(self._messages)
        if violations is None:
            found.append("CSP violations not recorded: add RECORD_CSP_VIOLATIONS to the context")
        else:
            found += [f"CSP violation: {v}" for v in violations]
        self._messages.clear()
        return found


# Every text of the page a person can see or hear, charts apart (plotly.js writes their ticks).
_TEXT = """
() => {
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement && !node.parentElement.closest('script, style, template, svg')) {
      texts.push(node.textContent);
    }
  }
  for (const el of document.body.querySelectorAll('[aria-label], [title]')) {
    texts.push(el.getAttribute('aria-label') || '', el.getAttribute('title') || '');
  }
  return texts.join(' ').replace(/\\s+/g, ' ');
}
"""
# A figure with decimals, or with a unit, of four digits or more and not grouped: 1192.80,
# 1192 kWh (account numbers such as HR-0201, dates and times are not figures).
_UNGROUPED = re.compile(r"(?<![\d,.:/-])\d{4,}(?:\.\d+|\s?(?:kWh|Wh|MWh|m³|[A-Z]{3}\b))")
# The figures of a page: grouped numbers and numbers with decimals (1,192.80, 24.4).
_FIGURE = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\d.,])\d+\.\d+")


def page_text(page: Page) -> str:
    text: str = page.evaluate(_TEXT)
    return text


def ungrouped_figures(text: str) -> list[str]:
    """Figures written without grouping (every page groups digits by three, in every
    language: portal/formats, portal.lib.money.format_money)."""
    return _UNGROUPED.findall(text)


def figures(text: str) -> list[str]:
    """The page's figures in order of appearance: the same page in another language must
    show the very same ones."""
    return _FIGURE.findall(text)


def horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than the window (0: no horizontal scrolling)."""
    width: int = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    return max(width, 0)


@dataclass(frozen=True)
class Route:
    name: str  # namespace:name
    route: str  # e.g. "a/<uuid:account_id>/bills/<uuid:bill_id>/"
    view: str = ""  # the view's dotted path, e.g. "allauth.account.views.login"

    @property
    def kwargs(self) -> list[str]:
        return re.findall(r"<(?:\w+:)?(\w+)>", self.route)

    @property
    def tenant(self) -> str:
        return "account" if self.route.startswith("a/") else "organisation"


def _walk(patterns: list[Any], prefix: str, namespace: str) -> Iterator[Route]:
    for item in patterns:
        if isinstance(item, URLResolver):
            inner = f"{namespace}{item.namespace}:" if item.namespace else namespace
            yield from _walk(item.url_patterns, prefix + str(item.pattern), inner)
        elif isinstance(item, URLPattern) and item.name:
            yield Route(f"{namespace}{item.name}", prefix + str(item.pattern), item.lookup_str)


def tenant_routes(known_kwargs: set[str]) -> list[Route]:
    """Every named URL under /a/<account_id>/ and /o/<org_id>/ whose kwargs we can fill.

    POST-only URLs and downloads are among them; the walk asks before it opens a page.
    """
    return [
        r
        for r in _walk(get_resolver().url_patterns, "", "")
        if r.route.startswith(("a/<uuid:account_id>/", "o/<uuid:org_id>/"))
        and set(r.kwargs) <= known_kwargs
    ]


def routes_of(view: Callable[[str], bool]) -> list[Route]:
    """Every named URL whose view's dotted path passes `view` (e.g. allauth's pages)."""
    return [r for r in _walk(get_resolver().url_patterns, "", "") if view(r.view)]


# Screenshot names of the pages people look at first.
SLUGS = {
    "tenancy:account_home": "dashboard",
    "meters:account_usage": "usage",
    "billing:account_bills": "bills",
    "billing:account_bill": "bill",
    "billing:account_wallet": "wallet",
    "billing:topup": "topup",
    "audit:account_log": "audit",
    "tenancy:organisation_home": "organisation",
    "web:organisation_accounts": "organisation-accounts",
    "audit:organisation_log": "organisation-audit",
}


def slug(route: Route) -> str:
    return SLUGS.get(route.name) or route.name.split(":")[-1].replace("_", "-")
