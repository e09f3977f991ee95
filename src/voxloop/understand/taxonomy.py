"""Scenario taxonomy as data: load, validate, merge an operator's YAML over the default."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from voxloop.errors import ConfigError

DEFAULT_TAXONOMY = Path(__file__).resolve().parent / "taxonomy" / "telecom.yaml"

#: The 14 top-level scenario codes every voxloop component agrees on.
SCENARIO_CODES = (
    "BILL",
    "USAGE",
    "PLAN",
    "UNSUB",
    "MKT",
    "CHNL",
    "PRIV",
    "INTL",
    "MNET",
    "HBB",
    "CMPL",
    "SVC",
    "SUPV",
    "TERM",
)


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from exc
    return pattern


class Rule(BaseModel):
    """An operator rule: a regex over the masked text that assigns a scenario."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    pattern: str = Field(min_length=1)
    priority: int = 0

    _valid = field_validator("pattern")(_check_regex)


class Subcategory(BaseModel):
    """A subcategory with its names and example phrases (training seeds)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z0-9_]+$")
    zh: str
    en: str
    examples: list[str] = Field(default_factory=list)


class Scenario(BaseModel):
    """A top-level service scenario."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    zh: str
    en: str
    description: str = ""
    rules: list[Rule] = Field(default_factory=list)
    subcategories: list[Subcategory] = Field(default_factory=list)


class Intent(BaseModel):
    """A customer intent recognised by a regex rule; the highest priority match wins."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z_]+$")
    zh: str
    en: str
    pattern: str
    priority: int = 0

    _valid = field_validator("pattern")(_check_regex)


class Taxonomy(BaseModel):
    """A versioned scenario taxonomy."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    uncertain_threshold: float = Field(default=0.35, ge=0, le=1)
    scenarios: list[Scenario] = Field(min_length=1)
    intents: list[Intent] = Field(default_factory=list)
    default_intent: str = "other"

    @field_validator("scenarios")
    @classmethod
    def _unique_codes(cls, scenarios: list[Scenario]) -> list[Scenario]:
        seen: set[str] = set()
        for s in scenarios:
            if s.code in seen:
                raise ValueError(f"duplicate scenario code {s.code}")
            seen.add(s.code)
            subs = [c.code for c in s.subcategories]
            if len(subs) != len(set(subs)):
                raise ValueError(f"duplicate subcategory code in scenario {s.code}")
        return scenarios

    def scenario(self, code: str) -> Scenario:
        """Return the scenario with ``code``."""
        for s in self.scenarios:
            if s.code == code:
                return s
        raise KeyError(code)

    def examples(self) -> tuple[list[str], list[str], list[str]]:
        """Return (texts, scenario codes, "CODE.sub" labels) of every example phrase."""
        texts: list[str] = []
        codes: list[str] = []
        subs: list[str] = []
        for s in self.scenarios:
            for sub in s.subcategories:
                for ex in sub.examples:
                    texts.append(ex)
                    codes.append(s.code)
                    subs.append(f"{s.code}.{sub.code}")
        return texts, codes, subs

    def rules(self) -> list[tuple[Rule, str]]:
        """Return every operator rule with its scenario, highest priority first."""
        pairs = [(r, s.code) for s in self.scenarios for r in s.rules]
        return sorted(pairs, key=lambda p: -p[0].priority)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Merge an operator taxonomy over ``base``: scenarios by code, subcategories by code."""
    merged = dict(base)
    for key in ("name", "version", "uncertain_threshold", "default_intent"):
        if key in extra:
            merged[key] = extra[key]
    scenarios = {s["code"]: dict(s) for s in base.get("scenarios", [])}
    for s in extra.get("scenarios", []):
        code = s.get("code")
        if code in scenarios:
            cur = scenarios[code]
            for key in ("zh", "en", "description"):
                if key in s:
                    cur[key] = s[key]
            cur["rules"] = [*cur.get("rules", []), *s.get("rules", [])]
            subs = {c["code"]: dict(c) for c in cur.get("subcategories", [])}
            for c in s.get("subcategories", []):
                if c["code"] in subs:
                    old = subs[c["code"]]
                    old.update({k: v for k, v in c.items() if k != "examples"})
                    old["examples"] = [*old.get("examples", []), *c.get("examples", [])]
                else:
                    subs[c["code"]] = dict(c)
            cur["subcategories"] = list(subs.values())
        else:
            scenarios[code] = dict(s)
    merged["scenarios"] = list(scenarios.values())
    intents = {i["code"]: i for i in base.get("intents", [])}
    intents.update({i["code"]: i for i in extra.get("intents", [])})
    merged["intents"] = list(intents.values())
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read taxonomy {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"taxonomy {path} must be a YAML mapping")
    return data


def load_taxonomy(path: Path | None = None, *, mode: str = "extend") -> Taxonomy:
    """Load the default taxonomy, optionally replaced or extended by an operator's YAML.

    ``mode="extend"`` merges scenarios and subcategories by code (examples and rules are
    appended); ``mode="replace"`` uses the operator file alone.
    """
    if mode not in ("extend", "replace"):
        raise ConfigError(f"taxonomy mode must be 'extend' or 'replace', got {mode!r}")
    data = _read_yaml(DEFAULT_TAXONOMY)
    if path is not None:
        extra = _read_yaml(path)
        data = extra if mode == "replace" else _merge(data, extra)
    try:
        return Taxonomy.model_validate(data)
    except ValidationError as exc:
        where = path or DEFAULT_TAXONOMY
        raise ConfigError(f"invalid taxonomy {where}: {exc}") from exc


@cache
def default_taxonomy() -> Taxonomy:
    """Return the built-in taxonomy (cached)."""
    return load_taxonomy()


@cache
def code_names() -> dict[str, dict[str, tuple[str, str]]]:
    """Return ``{"scenario"|"subcategory"|"intent": {code: (zh, en)}}`` of the built-in taxonomy."""
    taxonomy = default_taxonomy()
    subcategories: dict[str, tuple[str, str]] = {}
    for scenario in taxonomy.scenarios:
        for sub in scenario.subcategories:
            subcategories.setdefault(sub.code, (sub.zh, sub.en))
    return {
        "scenario": {s.code: (s.zh, s.en) for s in taxonomy.scenarios},
        "subcategory": subcategories,
        "intent": {i.code: (i.zh, i.en) for i in taxonomy.intents},
    }
