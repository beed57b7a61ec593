"""The baselines' hyperparameter dataclasses: built from a YAML mapping, keys and values checked."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

ConfigT = TypeVar("ConfigT", bound="BaselineConfig")


@dataclasses.dataclass
class BaselineConfig:
    """Base of MF/LightGCN's and SASRec/GRU4Rec's configs: one loader, one range check."""

    #: Fields that must be at least 1.
    positive: ClassVar[tuple[str, ...]] = ("dim", "epochs", "batch_size", "eval_every", "patience")

    @classmethod
    def from_dict(cls: type[ConfigT], values: Mapping[str, Any]) -> ConfigT:
        """Build from a mapping (a YAML config); an unknown key names the allowed ones."""
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; allowed: {sorted(allowed)}")
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field out of range."""
        for name in self.positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"{type(self).__name__}.{name} must be >= 1, got {getattr(self, name)}"
                )
