#!/usr/bin/env python3
"""Writes the values table of charts/imagegate/README.md from values.yaml.

A key is documented by the comment block right above it, whose first line
starts with "# --" (the helm-docs convention):

    # -- What the key does; the text may go on
    # over several comment lines.
    # @default -- text shown instead of the literal default
    key: value

The table goes between the README's "<!-- values-table:start -->" and
"<!-- values-table:end -->" markers. Usage:

    scripts/chart-values-doc.py           rewrite the README
    scripts/chart-values-doc.py --check   exit 1 if the README is out of date

Only the Python standard library and PyYAML are needed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "imagegate"
START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"

KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+|\"[^\"]*\"):(?:\s|$)")


class DocError(Exception):
    """values.yaml documentation that cannot be turned into a table."""


def documented_keys(text: str) -> list[tuple[str, str, str | None]]:
    """(dotted key path, description, @default override) for every key
    preceded by a "# --" comment block, in file order."""
    out: list[tuple[str, str, str | None]] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    pending: list[str] | None = None
    default_override: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[len("# --") :].strip()]
            default_override = None
            continue
        if stripped.startswith("# @default --"):
            if pending is None:
                raise DocError(f"values.yaml:{lineno}: @default without a '# --' description")
            default_override = stripped[len("# @default --") :].strip()
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped[1:].strip())
            continue
        if not stripped:
            # A blank line ends a description that no key followed.
            pending = None
            default_override = None
            continue
        m = KEY_LINE.match(line)
        if not m or line.lstrip().startswith("- "):
            continue
        indent = len(m.group("indent"))
        key = m.group("key").strip('"')
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key])
        stack.append((indent, key))
        if pending is not None:
            description = " ".join(p for p in pending if p)
            if not description:
                raise DocError(f"values.yaml:{lineno}: empty description for {path}")
            out.append((path, description, default_override))
        pending = None
        default_override = None
    return out


def lookup(values: dict, path: str):
    node = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise DocError(f"documented key {path} not found in values.yaml")
        node = node[part]
    return node


def type_name(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(values_text: str) -> str:
    values = yaml.safe_load(values_text)
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for path, description, override in documented_keys(values_text):
        value = lookup(values, path)
        if override is not None:
            default = override
        else:
            default = "`" + json.dumps(value, separators=(",", ":")) + "`"
        rows.append(f"| `{path}` | {type_name(value)} | {cell(default)} | {cell(description)} |")
    return "\n".join(rows) + "\n"


def render_readme(readme: str, values_text: str) -> str:
    if START not in readme or END not in readme:
        raise DocError(f"README.md needs the markers {START} and {END}")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table(values_text)}{END}{tail}"


def main(argv: list[str]) -> int:
    check = "--check" in argv[1:]
    readme_path = CHART / "README.md"
    values_text = (CHART / "values.yaml").read_text()
    readme = readme_path.read_text()
    try:
        updated = render_readme(readme, values_text)
    except DocError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if check:
        if updated != readme:
            print(
                "charts/imagegate/README.md is out of date: run scripts/chart-values-doc.py",
                file=sys.stderr,
            )
            return 1
        return 0
    if updated != readme:
        readme_path.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
