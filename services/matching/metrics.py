"""Matching's metrics. Labels are bounded: outcomes, rungs, kinds, reasons, needs, priorities
and statuses; never ids or anything about a person."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

WAIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


@dataclass
class MatchingMetrics:
    decisions: Counter
    claim_conflicts: Counter
    claims_released: Counter
    report_to_decision: Histogram
    report_to_first_offer: Histogram
    candidate_search: Histogram
    helpers_indexed: Gauge
    offers: Counter
    answers: Counter
    escalations: Counter
    resolved: Counter
    open_cases: Gauge
    first_contact_overdue: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> MatchingMetrics:
        return cls(
            decisions=Counter(
                "carerelay_matching_decisions_total",
                "Cases decided for the first time, by outcome and kind of helper",
                ["outcome", "helper_kind", "need"],
                registry=registry,
            ),
            claim_conflicts=Counter(
                "carerelay_matching_claim_conflicts_total",
                "Capacity claims lost to another case or replica",
                registry=registry,
            ),
            claims_released=Counter(
                "carerelay_matching_stale_claims_released_total",
                "Capacity held for a case that went to someone else, given back by the "
                "reconciliation pass",
                registry=registry,
            ),
            report_to_decision=Histogram(
                "carerelay_matching_report_to_decision_seconds",
                "Time from a report being received to its first offer or escalation",
                buckets=WAIT_BUCKETS,
                registry=registry,
            ),
            report_to_first_offer=Histogram(
                "carerelay_matching_report_to_first_offer_seconds",
                "Time from a report being received to the first offer to a helper",
                buckets=WAIT_BUCKETS,
                registry=registry,
            ),
            candidate_search=Histogram(
                "carerelay_matching_candidate_search_seconds",
                "Time to find and rank the candidates on one rung",
                buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
                registry=registry,
            ),
            helpers_indexed=Gauge(
                "carerelay_matching_helpers_indexed",
                "Helpers in this replica's in-process index",
                registry=registry,
            ),
            offers=Counter(
                "carerelay_matching_offers_total",
                "Offers made, by rung of the ladder and kind of helper",
                ["rung", "helper_kind"],
                registry=registry,
            ),
            answers=Counter(
                "carerelay_matching_offer_answers_total",
                "Offers answered: accepted, declined or timeout",
                ["outcome"],
                registry=registry,
            ),
            escalations=Counter(
                "carerelay_matching_escalations_total",
                "Cases moved up the ladder, by the rung they moved to (duty_desk: escalated to "
                "the duty desk) and why",
                ["rung", "reason"],
                registry=registry,
            ),
            resolved=Counter(
                "carerelay_matching_resolved_total",
                "Cases closed (问到、访到、帮到、送到), by resolution",
                ["resolution"],
                registry=registry,
            ),
            open_cases=Gauge(
                "carerelay_matching_open_cases",
                "Cases not yet resolved, by status and priority, counted from the store "
                "(every replica reports the same store-wide number: aggregate with max)",
                ["status", "priority"],
                registry=registry,
            ),
            first_contact_overdue=Gauge(
                "carerelay_matching_first_contact_overdue",
                "Open cases no helper has accepted yet, past their first-contact deadline, "
                "counted from the store (aggregate with max)",
                ["priority"],
                registry=registry,
            ),
        )
