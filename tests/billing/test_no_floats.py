"""Money is never a float in billing: a scan of the sources for float literals and float()."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Where money is computed or stored. Benchmarks and tests may time things with floats.
SOURCES = [ROOT / "billing", ROOT / "portal" / "lib" / "money.py"]
# A float that is not money (a network timeout, chart geometry, the check that refuses floats)
# says so on its line, so that each exception is a reviewed decision.
MARK = "# not money"


def _python_files() -> list[Path]:
    files: list[Path] = []
    for source in SOURCES:
        files.extend([source] if source.is_file() else sorted(source.rglob("*.py")))
    return [f for f in files if "migrations" not in f.parts]


def test_billing_has_no_float_literals_or_float_calls() -> None:
    offenders = []
    files = _python_files()
    assert len(files) > 20
    for file in files:
        text = file.read_text()
        lines = text.splitlines()
        tree = ast.parse(text, filename=str(file))
        for node in ast.walk(tree):
            literal = isinstance(node, ast.Constant) and type(node.value) is float
            call = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "float"
            )
            annotation = isinstance(node, ast.Name) and node.id == "float"
            line = getattr(node, "lineno", 0)
            if (literal or call or annotation) and MARK not in lines[line - 1]:
                offenders.append(f"{file.relative_to(ROOT)}:{line}")
    assert offenders == []
