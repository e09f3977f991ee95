"""Estimator conventions of the analyze domain: parameters, learned state, save and load.

``__init__`` stores keyword parameters only; ``fit`` learns attributes ending in ``_`` and
returns ``self``.  ``save`` writes the parameters and learned state to one file that
``load`` reads back; the file names its class, so loading the wrong kind fails clearly.
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, TypeVar

from voxloop.errors import UnusableInputError

_FORMAT = "voxloop.analyze/1"


class Estimator:
    """Base class: parameter access, fitted check, save and load."""

    def get_params(self) -> dict[str, Any]:
        """Return the constructor parameters."""
        names = [
            p.name
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.name != "self" and p.kind is not p.VAR_KEYWORD
        ]
        return {name: getattr(self, name) for name in names}

    def is_fitted(self) -> bool:
        """Tell whether ``fit`` has run (some learned attribute ending in ``_`` exists)."""
        return any(k.endswith("_") and not k.startswith("_") for k in vars(self))

    def _require_fitted(self) -> None:
        if not self.is_fitted():
            raise UnusableInputError(f"{type(self).__name__} is not fitted; call fit first")

    def save(self, path: str | Path) -> Path:
        """Write parameters and learned state to ``path``."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        learned = {k: v for k, v in vars(self).items() if k.endswith("_")}
        payload = {
            "format": _FORMAT,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": self.get_params(),
            "learned": learned,
        }
        tmp = target.with_suffix(target.suffix + ".tmp")
        with tmp.open("wb") as fh:
            pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(target)
        return target

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a model written by ``save`` (only files this project wrote: it is a pickle)."""
        with Path(path).open("rb") as fh:
            payload = pickle.load(fh)
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise UnusableInputError(f"{path} is not a voxloop analyze model")
        expected = f"{cls.__module__}.{cls.__qualname__}"
        if payload["class"] != expected:
            raise UnusableInputError(f"{path} holds a {payload['class']}, not a {expected}")
        model = cls(**payload["params"])
        for key, value in payload["learned"].items():
            setattr(model, key, value)
        return model


#: Every estimator class of the analyze domain, by name; each model module adds its own
#: class with ``register_model`` so this module never imports the models (no import circle).
REGISTRY: dict[str, type[Estimator]] = {}

E = TypeVar("E", bound=type[Estimator])


def register_model(name: str) -> Callable[[E], E]:
    """Add an estimator class to ``REGISTRY`` under ``name`` (class decorator)."""

    def deco(cls: E) -> E:
        REGISTRY[name] = cls
        return cls

    return deco


def registered_models() -> list[type[Estimator]]:
    """Return the estimator classes registered so far (import the model modules first).

    The shared check suite runs each; a model module that is not imported yet has not
    registered its class.
    """
    return list(REGISTRY.values())
