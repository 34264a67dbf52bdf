from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class MatchingMetrics:
    decisions: Counter
    claim_conflicts: Counter
    report_to_decision: Histogram
    candidate_search: Histogram
    helpers_indexed: Gauge
    answers: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> "MatchingMetrics":
        return cls(
            decisions=Counter(
                "carerelay_matching_decisions_total",
                "Cases decided, by outcome and kind of helper",
                ["outcome", "helper_kind", "need"],
                registry=registry,
            ),
            claim_conflicts=Counter(
                "carerelay_matching_claim_conflicts_total",
                "Capacity claims lost to another case or replica",
                registry=registry,
            ),
            report_to_decision=Histogram(
                "carerelay_matching_report_to_decision_seconds",
                "Time from a report being received to its first assignment or escalation",
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
                registry=registry,
            ),
            candidate_search=Histogram(
                "carerelay_matching_candidate_search_seconds",
                "Time to rank candidates",
                buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
                registry=registry,
            ),
            answers=Counter(
                "carerelay_matching_offer_answers_total",
                "Offers answered: accepted, declined or timeout",
                ["outcome"],
                registry=registry,
            ),
            helpers_indexed=Gauge(
                "carerelay_matching_helpers_indexed",
                "Helpers in this replica's in-process index",
                registry=registry,
            ),
        )
