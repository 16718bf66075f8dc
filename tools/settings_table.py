"""Rewrite the settings tables of the README and docs/api.md from strategyq.settings.

python -m tools.settings_table            # rewrite them
python -m tools.settings_table --check    # exit 1 when one is out of date
python -m tools.settings_table --print    # the README's table on stdout
"""

from __future__ import annotations

import sys
from pathlib import Path

from strategyq.api.config import ApiConfig
from strategyq.settings import SETTINGS, Setting, document_tables, markdown, table, update_document

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "api.md")


def tables() -> dict[str, tuple[Setting, ...]]:
    """The tables a document may hold, by the name its marker gives: ``all`` (every
    setting: the worker's, Redis's, the sandbox's and the HTTP API's) and ``api``."""
    api = table(ApiConfig)
    return {"all": SETTINGS + api, "api": api}


def stale() -> list[str]:
    """``path: table`` for every generated table that differs from the settings."""
    out = []
    for path in DOCUMENTS:
        wanted = tables()
        for name, text in document_tables(path.read_text(), wanted).items():
            if text != markdown(wanted[name]):
                out.append(f"{path.relative_to(ROOT)}: {name}")
    return out


def main(argv: list[str]) -> int:
    if argv == ["--print"]:
        sys.stdout.write(markdown(tables()["all"]))
        return 0
    if argv == ["--check"]:
        for line in stale():
            print(f"{line} is out of date: run python -m tools.settings_table")
        return 1 if stale() else 0
    if argv:
        print(__doc__)
        return 2
    for path in DOCUMENTS:
        changed = update_document(path, tables())
        print(f"{path.relative_to(ROOT)}: {'updated' if changed else 'up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
