"""Example strategies, shipped as source text (``strategyq.examples.source(name)``)."""

from __future__ import annotations

from importlib import resources


def source(name: str) -> str:
    """The source of ``examples/<name>.py``."""
    return resources.files(__name__).joinpath(f"{name}.py").read_text()
