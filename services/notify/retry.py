"""What follows a failed send: a retry on the same channel after a backoff, the next channel,
or giving up. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """Where a message stands: which channel (route index), and its attempt numbers."""

    route: int = 0
    attempt: int = 1  # over the message's life: part of every attempt's idempotency key
    route_attempt: int = 1  # on this channel


@dataclass(frozen=True)
class Retry:
    step: Step
    delay_ms: int  # the delay queue it waits in (its TTL)
    expiration_ms: int  # its own, jittered, expiration (at most the queue's TTL)


@dataclass(frozen=True)
class Fallback:
    step: Step


@dataclass(frozen=True)
class GiveUp:
    pass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int  # per channel
    delays_ms: tuple[int, ...]  # before retry 1, 2, ... (exponential; see topology)
    jitter: float = 0.5  # the share of each delay drawn at random ("equal jitter")

    def __post_init__(self) -> None:
        if len(self.delays_ms) < self.max_attempts - 1:
            raise ValueError("need one delay per retry")


def after_failure(
    step: Step, retryable: bool, routes: int, policy: RetryPolicy, draw: float
) -> Retry | Fallback | GiveUp:
    """`draw` is a random number in [0, 1): the jitter, passed in to keep this pure."""
    if retryable and step.route_attempt < policy.max_attempts:
        delay = policy.delays_ms[step.route_attempt - 1]
        expiration = int(delay * (1 - policy.jitter * draw))
        return Retry(Step(step.route, step.attempt + 1, step.route_attempt + 1), delay, expiration)
    if step.route + 1 < routes:
        return Fallback(Step(step.route + 1, step.attempt + 1, 1))
    return GiveUp()
