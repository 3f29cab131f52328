"""Numbered SQL migrations, one folder per dialect (NNNN_name.sql)."""

from __future__ import annotations

from importlib import resources


def migrations(dialect: str) -> list[tuple[int, list[str]]]:
    """(version, statements) in order. Statements are split on ';' at line ends,
    so a migration file must not put ';' at the end of a line inside a string."""
    folder = resources.files(__package__).joinpath(dialect)
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            text = entry.read_text(encoding="utf-8")
            statements = [s.strip() for s in text.split(";\n") if _has_sql(s)]
            found.append((version, statements))
    return sorted(found)


def _has_sql(chunk: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in chunk.splitlines())
