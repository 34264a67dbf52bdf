"""Intake's metrics: reports accepted, duplicate and refused, by hotline system and need."""

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter

OTHER = "other"


@dataclass
class SourceLabel:
    """Keeps the `source` label bounded: the first `limit` hotline systems seen by this process
    get their own value, any further ones share `other` (a misbehaving client cannot mint series).
    """

    limit: int = 64
    _seen: set[str] = field(default_factory=set)

    def __call__(self, source: str) -> str:
        if source in self._seen:
            return source
        if len(self._seen) < self.limit:
            self._seen.add(source)
            return source
        return OTHER


@dataclass
class ReportCounter:
    """`carerelay_intake_reports_total{source, need, result}`; result is accepted or duplicate."""

    counter: Counter
    source: SourceLabel

    def labels(self, source: str, need: str, result: str) -> Counter:
        return self.counter.labels(self.source(source), need, result)


@dataclass
class IntakeMetrics:
    reports: ReportCounter
    rejected: Counter
    outbox_relayed: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry, source_limit: int = 64) -> "IntakeMetrics":
        return cls(
            reports=ReportCounter(
                Counter(
                    "carerelay_intake_reports_total",
                    "Reports received and stored (accepted) or recognised as already reported "
                    "(duplicate), by hotline system and need",
                    ["source", "need", "result"],
                    registry=registry,
                ),
                SourceLabel(source_limit),
            ),
            rejected=Counter(
                "carerelay_intake_rejected_total",
                "Reports refused over HTTP, by reason (validation: a bad field, named in the 422)",
                ["reason"],
                registry=registry,
            ),
            outbox_relayed=Counter(
                "carerelay_intake_outbox_relayed_total",
                "Cases whose hardship.reported event was published late by the outbox relay",
                registry=registry,
            ),
        )
