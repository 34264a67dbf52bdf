from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class NotifyMetrics:
    """Labels are bounded: channel names, purposes, statuses, never ids or personal data."""

    sends: Counter
    report_to_outreach: Histogram
    attempts: Counter
    retries: Counter
    receipts: Counter
    failed: Counter
    callbacks: Counter
    helpers_cached: Gauge

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
                "Time from a report being received to its helper being told",
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
                registry=registry,
            ),
            attempts=Counter(
                "carerelay_notify_attempts_total",
                "Sends handed to a channel (first tries and retries)",
                ["channel"],
                registry=registry,
            ),
            retries=Counter(
                "carerelay_notify_retries_total",
                "Retries scheduled through the delay queues",
                ["channel"],
                registry=registry,
            ),
            receipts=Counter(
                "carerelay_notify_receipts_total",
                "Delivery receipts received (delivered, failed, unmatched)",
                ["channel", "status"],
                registry=registry,
            ),
            failed=Counter(
                "carerelay_notify_failed_total",
                "Channels given up on after their attempts (outreach.failed)",
                ["channel", "purpose"],
                registry=registry,
            ),
            callbacks=Counter(
                "carerelay_notify_callbacks_total",
                "Hotline status callbacks: sent, failed (an attempt), unconfigured (no URL)",
                ["result"],
                registry=registry,
            ),
            helpers_cached=Gauge(
                "carerelay_notify_helpers_cached",
                "Helper contacts held in process",
                registry=registry,
            ),
        )
