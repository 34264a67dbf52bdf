"""The matching policy: which helpers may serve which needs, as configuration (policy.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.contracts import DisabilityCategory, HelperKind, Need, Urgency

from .triage import TriageRules

DEFAULT_POLICY_FILE = Path(__file__).with_name("policy.toml")


@dataclass(frozen=True)
class Ranking:
    distance: float
    load: float
    acknowledgement: float
    distance_scale_km: float


@dataclass(frozen=True)
class Policy:
    kinds_for_need: dict[Need, tuple[HelperKind, ...]]
    need_skills: dict[Need, str]
    accompanying_needs: frozenset[Need]
    accommodation_skills: dict[DisabilityCategory, str]
    wheelchair_grades: frozenset[int]
    wheelchair_needs: frozenset[Need]
    wheelchair_skill: str
    carer_contact_categories: frozenset[DisabilityCategory]
    ranking: Ranking
    triage: TriageRules
    max_offers_per_rung: int
    widen_factor: float

    @classmethod
    def load(cls, path: Path = DEFAULT_POLICY_FILE) -> Policy:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        missing = {n.value for n in Need} - raw["needs"].keys()
        if missing:
            raise ValueError(f"{path}: [needs] has no entry for {sorted(missing)}")
        return cls(
            kinds_for_need={
                Need(k): tuple(HelperKind(x) for x in v) for k, v in raw["needs"].items()
            },
            need_skills={Need(k): v for k, v in raw.get("need_skills", {}).items()},
            accompanying_needs=frozenset(Need(n) for n in raw["accompanying"]["needs"]),
            accommodation_skills={
                DisabilityCategory(k): v for k, v in raw["accommodation_skills"].items()
            },
            wheelchair_grades=frozenset(raw["wheelchair"]["grades"]),
            wheelchair_needs=frozenset(Need(n) for n in raw["wheelchair"]["needs"]),
            wheelchair_skill=raw["wheelchair"]["skill"],
            carer_contact_categories=frozenset(
                DisabilityCategory(c) for c in raw["carer_contact"]["categories"]
            ),
            ranking=Ranking(**{k: float(v) for k, v in raw["ranking"].items()}),
            triage=_triage_rules(raw),
            max_offers_per_rung=int(raw["offers"]["max_per_rung"]),
            widen_factor=float(raw["offers"]["widen_factor"]),
        )


def _minutes(table: dict[str, Any]) -> dict[str, timedelta]:
    return {k: timedelta(minutes=float(v)) for k, v in table.items()}


def _triage_rules(raw: dict[str, Any]) -> TriageRules:
    t = raw["triage"]
    return TriageRules(
        points={k: int(v) for k, v in t["points"].items()},
        critical_needs=frozenset(Need(n) for n in t["critical_needs"]),
        classes=tuple((str(name), int(floor)) for name, floor in t["classes"]),
        first_contact={Urgency(k): v for k, v in _minutes(t["first_contact_minutes"]).items()},
        resolution={Urgency(k): v for k, v in _minutes(t["resolution_minutes"]).items()},
        class_first_contact_cap=_minutes(t["class_first_contact_cap_minutes"]),
        ack_window=_minutes(raw["offers"]["ack_window_minutes"]),
    )
