"""The matching policy: which helpers may serve which needs, as configuration (policy.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from shared.contracts import DisabilityCategory, HelperKind, Need

DEFAULT_POLICY_FILE = Path(__file__).with_name("policy.toml")


@dataclass(frozen=True)
class Policy:
    kinds_for_need: dict[Need, tuple[HelperKind, ...]]
    need_skills: dict[Need, str]
    accompanying_needs: frozenset[Need]
    accommodation_skills: dict[DisabilityCategory, str]
    wheelchair_grades: frozenset[int]
    wheelchair_needs: frozenset[Need]
    wheelchair_skill: str

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
        )
