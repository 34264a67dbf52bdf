from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass
class IntakeMetrics:
    reports: Counter
    rejected: Counter
    outbox_relayed: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> "IntakeMetrics":
        return cls(
            reports=Counter(
                "carerelay_intake_reports_total",
                "Reports received, by result",
                ["source", "need", "result"],
                registry=registry,
            ),
            rejected=Counter(
                "carerelay_intake_rejected_total",
                "Reports refused as bad input",
                ["reason"],
                registry=registry,
            ),
            outbox_relayed=Counter(
                "carerelay_intake_outbox_relayed_total",
                "Events published late by the outbox relay",
                registry=registry,
            ),
        )
