"""The house points down: web above billing above meters above portal core.

import-linter checks this in `make lint`; this test keeps it in the suite, so a lower layer
importing a higher one fails the tests too, naming the import.
"""

from __future__ import annotations

import grimp

# Highest first. portal's wiring (urls, settings, wsgi, bench_urls) may import anything.
LAYERS = ("web", "billing", "meters", "portal")
WIRING = ("portal.urls", "portal.settings", "portal.wsgi", "portal.bench_urls")


def _layer(module: str) -> int | None:
    if any(module == w or module.startswith(w + ".") for w in WIRING):
        return None
    root = module.split(".", maxsplit=1)[0]
    return LAYERS.index(root) if root in LAYERS else None


def test_no_import_points_up() -> None:
    graph = grimp.build_graph(*LAYERS, exclude_type_checking_imports=True)
    upward = []
    checked = 0
    for importer in graph.modules:
        low = _layer(importer)
        if low is None:
            continue
        for imported in graph.find_modules_directly_imported_by(importer):
            high = _layer(imported)
            if high is None:
                continue
            checked += 1
            if high < low:
                details = graph.get_import_details(importer=importer, imported=imported)
                lines = ", ".join(str(d["line_number"]) for d in details)
                upward.append(f"{importer} -> {imported} (line {lines})")
    assert checked > 500, "the graph holds too few imports: is it built from the right packages?"
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(sorted(upward))
