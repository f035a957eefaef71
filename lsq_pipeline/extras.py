"""The optional parts of lsq_pipeline and the extra that installs each: a feature used without its
extra fails in one line that names it, never with an ImportError's traceback."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(RuntimeError):
    """An optional feature is used but its extra is not installed."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """`module`, imported; MissingExtra naming `pip install 'lsq_pipeline[extra]'` when it is absent."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{feature} needs the {module} package, which is not installed: "
                           f"pip install 'lsq_pipeline[{extra}]'") from None
