"""What the admin walks share: every admin page of every registered model, and the labels on
a page (the admin's own words, as opposed to the data it shows).

Labels are the texts of headings, column headers, form labels, help texts, filter titles and
choices, actions, buttons, breadcrumb links, object tools, the paginator's count and the
choice and yes/no columns of a change list; cells, read-only values and inputs are data.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from django.contrib import admin
from django.db import models
from django.urls import NoReverseMatch, reverse

from tests.browser.pages import LATIN_TOKENS, PROPER_NAMES

# Codes and names that stay Latin in the admin's Chinese, as they do in Taiwanese software:
# technical terms, the meters' radio technologies, and the keys named in Django's own help.
ADMIN_TOKENS = frozenset(
    {"ID", "IP", "URL", "UUID", "TOTP", "MFA", "WebAuthn", "DevEUI", "OBIS", "Webhook", "webhook"}
    | {"LoRaWAN", "IoT", "Bus", "Cat", "Control", "Command", "Mac"}
)
# Code: a JSON sample in a help text ({"rate": "0.25"}), quoted names, an event's dotted code
# (auth.login). E-mail addresses are data.
_JSON = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]")
_CODE = re.compile(r'"[^"]*"|\b[a-z_]+(?:\.[a-z_]+)+\b')
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
_LABEL_TAGS = {"title", "h1", "h2", "h3", "h4", "caption", "th", "label", "legend", "button"}
_WORD = re.compile(r"[A-Za-z]{3,}")


@dataclass(frozen=True)
class AdminPage:
    url: str
    model: type[models.Model]
    kind: str  # changelist, change or add


def admin_pages(objects: dict[type[models.Model], models.Model]) -> Iterator[AdminPage]:
    """Every registered model's change list, add form and (given an object) change form."""
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        prefix = f"admin:{opts.app_label}_{opts.model_name}"
        yield AdminPage(reverse(f"{prefix}_changelist"), model, "changelist")
        with contextlib.suppress(NoReverseMatch):  # an admin without an add form
            yield AdminPage(reverse(f"{prefix}_add"), model, "add")
        obj = objects.get(model)
        if obj is not None:
            yield AdminPage(reverse(f"{prefix}_change", args=[obj.pk]), model, "change")
        del model_admin


class _Labels(HTMLParser):
    """Collect the label texts of an admin page (see the module's docstring)."""

    def __init__(self, choice_columns: set[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.choice_columns = choice_columns
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.found: list[str] = []

    def _inside(self, tag: str, cls: str = "", **attrs: str) -> bool:
        for name, found in self.stack:
            if tag not in (name, "*"):
                continue
            if cls and cls not in found.get("class", "").split():
                continue
            if all(found.get(k) == v for k, v in attrs.items()):
                return True
        return False

    def _label_context(self) -> bool:
        if self._inside("*", translate="no") or any(
            t in ("script", "style", "code", "pre", "textarea") for t, _ in self.stack
        ):
            return False
        tags = {t for t, _ in self.stack}
        return bool(
            tags & _LABEL_TAGS
            or self._inside("*", "help")
            or self._inside("*", "helptext")
            or (self._inside("div", "breadcrumbs") and "a" in tags)
            or self._inside("ul", "object-tools")
            or self._inside("p", "paginator")
            or self._inside("*", id="changelist-filter")
            or self._inside("select", name="action")
            or any(
                tag == "td" and set(attrs.get("class", "").split()) & self.choice_columns
                for tag, attrs in self.stack
            )
        )

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "input" and values.get("type") == "submit" and values.get("value"):
            self.found.append(values["value"])
        if values.get("placeholder"):
            self.found.append(values["placeholder"])
        if tag not in _VOID:
            self.stack.append((tag, values))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if text and self._label_context():
            self.found.append(text)


def choice_columns(model: type[models.Model]) -> set[str]:
    """The change list's cell classes of columns whose values are labels (choices, yes/no)."""
    return {
        f"field-{f.name}"
        for f in model._meta.get_fields()
        if isinstance(f, models.Field) and (f.choices or isinstance(f, models.BooleanField))
    }


def english_labels(html: str, model: type[models.Model], data: list[str]) -> list[str]:
    """Return the labels of the page with an English word in them, data taken out."""
    parser = _Labels(choice_columns(model))
    parser.feed(html)
    problems = []
    for text in parser.found:
        rest = _CODE.sub(" ", _EMAIL.sub(" ", text))
        for item in (*PROPER_NAMES, *data):  # data longest first
            rest = rest.replace(item, " ")
        while _JSON.search(rest):
            rest = _JSON.sub(" ", rest)
        # All capitals are codes (currencies, OBIS, formats), never words of a label.
        words = [
            w
            for w in _WORD.findall(rest)
            if w not in LATIN_TOKENS and w not in ADMIN_TOKENS and not w.isupper()
        ]
        if words:
            problems.append(text)
    return sorted(set(problems))


def data_texts(objects: list[Any]) -> list[str]:
    """What the admin shows as data: each object's name and its text fields' values."""
    texts: set[str] = set()
    for obj in objects:
        texts.add(str(obj))
        for field in obj._meta.concrete_fields:
            if isinstance(field, models.CharField | models.TextField | models.EmailField):
                value = getattr(obj, field.attname)
                if value:
                    texts.add(str(value))
    return sorted((t for t in texts if t.strip()), key=len, reverse=True)
