"""Who is calling an API: API keys, signed bodies, a rate limit per key, and roles."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from shared.auth import Authenticator, Caller, Role, signature_problem

TIMESTAMP_HEADER = "x-carerelay-timestamp"
SIGNATURE_HEADER = "x-carerelay-signature"


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail={"error": "unauthorized", "message": message},
        headers={"WWW-Authenticate": 'Bearer realm="carerelay"'},
    )


class Guard:
    """A FastAPI dependency: the authenticated caller, or 401 / 429."""

    def __init__(
        self,
        authenticator: Authenticator,
        rate: str,
        signature_window_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._authenticator = authenticator
        # Per replica: with N intake replicas a key may send up to N times the rate.
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._rate: RateLimitItem = parse(rate)
        self._window_s = signature_window_s
        self._clock = clock

    async def __call__(self, request: Request) -> Caller:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("send an API key as `Authorization: Bearer <key>`")
        caller = await self._authenticator.authenticate(token.strip())
        if caller is None:
            raise _unauthorized("unknown or revoked API key")
        if not await self._limiter.hit(self._rate, caller.key_id):
            reset, _ = await self._limiter.get_window_stats(self._rate, caller.key_id)
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail={"error": "rate limited", "message": f"at most {self._rate} per key"},
                headers={"Retry-After": str(max(1, int(reset - time.time())))},
            )
        signed = SIGNATURE_HEADER in request.headers
        if caller.signing_secret and (caller.require_signature or signed):
            problem = signature_problem(
                caller.signing_secret,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                await request.body(),
                self._clock(),
                self._window_s,
            )
            if problem is not None:
                raise _unauthorized(problem)
        return caller


async def authorized(request: Request) -> Caller:
    """The dependency routes declare; the app's `Guard` (in `app.state.guard`) does the work."""
    guard: Guard = request.app.state.guard
    return await guard(request)


Authorized = Annotated[Caller, Depends(authorized)]


def require(*roles: Role) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency: the caller, if their key has one of these roles; 403 otherwise."""

    async def check(caller: Authorized) -> Caller:
        if caller.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail={"error": "forbidden", "message": f"this needs a key with role {allowed}"},
            )
        return caller

    return check
