"""Retries, per-call timeouts, rate limits and a concurrency bound around any client.

Retried (exponential backoff with full jitter, and never sooner than a 429's
``retry-after-ms``/``Retry-After``): transient errors (:class:`RateLimited`, 5xx,
timeout, connection, malformed body) and, if ``retry_empty``, empty output. Never
retried: refusals (:class:`Refused`) and rejected requests (400/401/403/404/422). After
the last attempt the last error is raised, with ``err.attempts`` the requests made.

The endpoint is proven before calls fan out: until one call has succeeded, calls go one
at a time. When that first answer is a stage-pausing rejection (401/403/404: bad key,
unknown model or URL), every later call fails at once with the same error and
``attempts == 0``, so a misconfigured stage costs one request, not one per item.

Example::

    client = ResilientClient(OpenAIClient(model="gpt-4o-mini"), max_attempts=5, timeout_s=60)
    result = await client.complete(request)   # result.attempts == calls made
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import random
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from pathgen.errors import BadOutput, LLMError, ProviderError, ProviderRejected, RateLimited
from pathgen.llm.base import ChatRequest, ChatResult, LLMClient
from pathgen.llm.completions import Refused
from pathgen.llm.ratelimit import RateLimiter, estimate_tokens

Sleep = Callable[[float], Awaitable[None]]


def is_retryable(err: BaseException, *, retry_empty: bool = True) -> bool:
    """Whether another attempt within the call could succeed."""
    if isinstance(err, BadOutput) and not isinstance(err, Refused):
        return retry_empty
    return isinstance(err, LLMError) and err.transient


class BackoffWait:
    """Full-jitter exponential backoff, but at least the server's ``Retry-After``."""

    def __init__(self, base_s: float = 0.5, max_s: float = 30.0, rng: random.Random | None = None):
        self.base_s = base_s
        self.max_s = max_s
        self._rng = rng or random.Random()

    def delay(self, attempt_number: int, err: BaseException | None) -> float:
        """Seconds to wait after failed attempt ``attempt_number`` (1-based)."""
        ceiling = min(self.max_s, self.base_s * 2 ** (attempt_number - 1))
        delay = self._rng.uniform(0, ceiling)
        if isinstance(err, RateLimited) and err.retry_after is not None:
            delay = max(delay, err.retry_after)
        return delay

    def __call__(self, state: RetryCallState) -> float:
        err = state.outcome.exception() if state.outcome else None
        return self.delay(state.attempt_number, err)


def _shifted(state: RetryCallState) -> RetryCallState:
    """The tenacity loop starts at the second attempt: number its attempts from 2."""
    shifted = copy.copy(state)
    shifted.attempt_number = state.attempt_number + 1
    return shifted


class ResilientClient:
    """An :class:`LLMClient` that bounds, limits, times out and retries another one."""

    def __init__(
        self,
        inner: LLMClient,
        *,
        max_attempts: int = 5,
        timeout_s: float = 60.0,
        max_concurrency: int = 16,
        limiter: RateLimiter | None = None,
        retry_empty: bool = True,
        backoff: BackoffWait | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.inner = inner
        self.provider = inner.provider
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.limiter = limiter
        self.retry_empty = retry_empty
        self._semaphore = asyncio.BoundedSemaphore(max_concurrency)
        self._backoff = backoff or BackoffWait()
        self._sleep = sleep
        #: One call has succeeded: calls may fan out.
        self._proven = False
        self._probe = asyncio.Lock()
        #: The stage-pausing rejection every call now fails with.
        self._blocked: ProviderRejected | None = None
        #: Requests sent and not answered yet (what the provider counts in flight).
        self.in_flight = 0

    def _retryable(self, err: BaseException) -> bool:
        return is_retryable(err, retry_empty=self.retry_empty)

    async def _attempt(self, request: ChatRequest, estimate: int) -> ChatResult:
        reservation = await self.limiter.acquire(estimate) if self.limiter else None
        try:
            async with asyncio.timeout(self.timeout_s):
                self.in_flight += 1
                try:
                    result = await self.inner.complete(request)
                finally:
                    self.in_flight -= 1
        except TimeoutError:
            raise ProviderError(
                f"{self.provider}: no answer within timeout_s={self.timeout_s:g} s"
            ) from None
        finally:
            if reservation is not None:
                reservation.release()  # the request reached the server, if at all, by now
        if reservation is not None:
            reservation.settle(result.input_tokens + result.output_tokens)
        return result

    def _raise_if_blocked(self) -> None:
        err = self._blocked
        if err is not None:
            again = ProviderRejected(
                str(err),
                status=err.status,
                provider=err.provider,
                base_url=err.base_url,
                model=err.model,
                detail=err.detail,
            )
            again.attempts = 0  # no request sent
            raise again

    async def complete(self, request: ChatRequest) -> ChatResult:
        """Run ``request`` with retries; raise the last :class:`LLMError` if all fail."""
        if not self._proven:
            async with self._probe:  # one call at a time until the endpoint answers
                self._raise_if_blocked()
                if not self._proven:
                    try:
                        result = await self._complete(request)
                    except ProviderRejected as err:
                        if err.pauses_stage:
                            self._blocked = err
                        raise
                    except BadOutput:
                        self._proven = True  # it answered: the endpoint works
                        raise
                    self._proven = True
                    return result
        self._raise_if_blocked()
        return await self._complete(request)

    async def _complete(self, request: ChatRequest) -> ChatResult:
        """Run ``request`` with retries; raise the last :class:`LLMError` if all fail.

        The first attempt runs outside tenacity (it costs ~0.3 ms CPU per call to set
        up); only a retryable failure enters the tenacity loop for the other attempts.
        """
        estimate = estimate_tokens(request) if self.limiter and self.limiter.tokens else 0
        async with self._semaphore:
            try:
                return await self._attempt(request, estimate)
            except LLMError as err:
                if self.max_attempts == 1 or not self._retryable(err):
                    err.attempts = 1
                    raise
                first_error = err
            attempts = 1
            await self._sleep(self._backoff.delay(1, first_error))
            retrying = AsyncRetrying(
                stop=stop_after_attempt(self.max_attempts - 1),
                wait=lambda state: self._backoff(_shifted(state)),
                retry=retry_if_exception(self._retryable),
                sleep=self._sleep,
                reraise=True,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        attempts += 1
                        result = await self._attempt(request, estimate)
            except LLMError as err:
                err.attempts = attempts
                raise
        return dataclasses.replace(result, attempts=attempts)

    async def aclose(self) -> None:
        """Close the wrapped client."""
        await self.inner.aclose()
