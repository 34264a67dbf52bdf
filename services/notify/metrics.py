from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class NotifyMetrics:
    sends: Counter
    report_to_outreach: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> "NotifyMetrics":
        return cls(
            sends=Counter(
                "carerelay_notify_sends_total",
                "Outreach attempts, by channel and result",
                ["channel", "purpose", "result"],
                registry=registry,
            ),
            report_to_outreach=Histogram(
                "carerelay_notify_report_to_first_outreach_seconds",
                "Time from a report being received to its first successful outreach",
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
                registry=registry,
            ),
        )
