"""Streaming replies: relay upstream SSE to the client, honestly.

The client's response starts only once the upstream's first useful bytes are in (until then a
failure can still fall back). After that, a cut or stalled upstream ends the stream with an SSE
error event, never a clean end; whatever happens, what was streamed is charged. A complete stream's
terminator leaves only once its ledger line is written (ledger before reply), and the client's
stream ends there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from sluicegate_contract.schema import ModelPrice, Timeouts

from .accounting import Bounds, Charge, anomalous_charge, charge_for, usage_anomaly
from .attempt import Attempt
from .deadlines import Deadline
from .errors import sse_error
from .pricing import cost_micro_usd
from .providers.base import Adapter, BadUpstreamResponse, Operation, ReportedUsage, StreamRelay, Usage
from .providers.keyscrub import NO_KEY, KeyScrubber
from .providers.responses_stream import NumberedErrors
from .providers.usagefields import flagged
from .routing.outcome import FailureClass
from .tokens import estimate_output_tokens_from_chars
from .upstream import AttemptFailed, OpenResponse

_TRANSPORT_ERRORS = (aiohttp.ClientError, OSError)  # a broken upstream body (``OpenResponse``)
_RELEASE_SECONDS = 1.0  # how long the rest of a complete upstream body is read, for connection reuse
OVER_CAP = "upstream_output_over_cap"  # the status (and error code) of a stream cut past its reserved output
# A stream is cut once its output is surely past the output its reservation pays for: the upstream's
# own running count says so, or its text is longer than that many tokens could be at this many
# characters a token (prose runs ~4, code ~3.5; only runs of whitespace or rules get longer).
CUT_CHARS_PER_TOKEN = 8
# ... plus a fixed allowance, so a tiny cap is not cut on one long token (a long word, a rule, a run of
# spaces); the charge is bounded by the reservation whatever the cut, so the slack costs no money.
CUT_SLACK_CHARS = 64


class _OutputOverCap(Exception):
    """The upstream streamed past the output the reservation pays for (it ignored the cap it was sent)."""


def _past(relay: StreamRelay, limit: int, char_limit: int) -> bool:
    """Whether the output streamed so far is surely more than ``limit`` tokens. Cheap: per chunk."""
    if relay.output_chars > char_limit:
        return True
    usage = relay.usage
    if usage is None:
        return False
    reported = usage.reported.output_tokens if usage.reported is not None else None
    return usage.output_tokens > limit or (reported is not None and reported > limit)


class _SettlingStream(StreamingResponse):
    """A stream whose body generator is closed however the response ends (the client gone
    included), then ``on_close`` runs: the attempt is settled at once, never left to garbage
    collection, even when the client left before the body started (fault 6).

    Sent as Starlette's ``StreamingResponse`` sends it, without its task group: on an ASGI 2.3
    server (uvicorn: ``send`` to a closed connection just returns) one small task watches
    ``receive`` for the client's hang-up and cancels the stream; on 2.4 a failed ``send`` is the
    hang-up (``ClientDisconnect``)."""

    def __init__(
        self, body: AsyncGenerator[bytes, None], on_close: Callable[[], None], **kwargs: Any
    ) -> None:
        super().__init__(body, **kwargs)
        self._body = body
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            spec = scope.get("asgi", {}).get("spec_version", "2.0")
            if tuple(map(int, spec.split("."))) >= (2, 4):
                try:
                    await self._send_all(send)
                except OSError:
                    raise ClientDisconnect() from None
            else:
                await self._send_watched(receive, send)
        finally:
            await self._body.aclose()  # runs the body's own ``finally`` if it started
            self._on_close()

    async def _send_all(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self._body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_watched(self, receive: Receive, send: Send) -> None:
        """``_send_all``, cut (quietly, as Starlette's task group ends) when the client hangs up."""
        task = asyncio.current_task()
        assert task is not None
        streaming, gone = True, False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            if streaming:  # else the stream is over: nothing to cut (and no cancel may be left pending)
                gone = True
                task.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await self._send_all(send)
            streaming = False  # in the same step as the last send's return: no await in between
        except asyncio.CancelledError:
            streaming = False
            if gone and task.uncancel() == 0:
                return  # the hang-up's own cancel: the stream simply ends
            raise
        finally:
            watcher.cancel()


def _stream_error(op: Operation, message: str, code: str, relay: StreamRelay | None = None) -> bytes:
    if op == "responses" and isinstance(relay, NumberedErrors):  # the next event of its sequence
        return relay.error_event(message, code)
    if op == "messages":  # Anthropic-native clients read Anthropic's error event
        payload = msgspec.json.encode({"type": "error", "error": {"type": "api_error", "message": message}})
        return b"event: error\ndata: " + payload + b"\n\n"
    return sse_error(message, code)


async def _first_bytes(relay: StreamRelay, iterator: AsyncIterator[bytes], seconds: float) -> bytes:
    with Deadline(seconds):
        while True:
            out = relay.feed(await anext(iterator))
            if out:
                return out


async def stream_response(
    attempt: Attempt,
    adapter: Adapter,
    op: Operation,
    request: dict[str, Any],
    response: OpenResponse,
    timeouts: Timeouts,
    *,
    scrubber: KeyScrubber = NO_KEY,
) -> StreamingResponse | AttemptFailed:
    target, bounds = attempt.target, attempt.bounds
    assert bounds is not None  # set by the pipeline once the upstream answered
    relay = adapter.relay(op, target.model, request, scrubber=scrubber)  # upstream error events: scrubbed
    iterator = response.aiter_raw()
    deadline = attempt.started + timeouts.total_seconds
    try:
        first = await _first_bytes(relay, iterator, timeouts.first_byte_seconds)
    except (StopAsyncIteration, BadUpstreamResponse, TimeoutError, *_TRANSPORT_ERRORS) as exc:
        await response.aclose()
        kind = "timeout" if isinstance(exc, TimeoutError) else "bad_response"
        failure = AttemptFailed(kind, detail=f"stream failed before its first byte ({type(exc).__name__})")
        attempt.upstream_done()
        attempt.fail(failure, billed=True)
        return failure
    gw = attempt.gw
    settled = False

    def settle(status: int | str) -> None:
        nonlocal settled
        if settled:
            return
        settled = True
        attempt.upstream_done()
        _settle_stream(attempt, relay, status)
        gw.spawn(_release(response, iterator) if status == 200 else response.aclose())

    limit = bounds.output_tokens
    char_limit = limit * CUT_CHARS_PER_TOKEN + CUT_SLACK_CHARS if limit is not None else 0

    async def body() -> AsyncGenerator[bytes, None]:
        status: int | str = "client_disconnect"
        gw.drain.inflight += 1
        try:
            cut: tuple[str, str] | None = None  # (message, code) of the error event that ends a cut stream
            tail = b""  # the stream's last event (its terminator): it waits for the ledger line
            try:
                if limit is not None and _past(relay, limit, char_limit):
                    raise _OutputOverCap
                if relay.completed:  # the whole answer came in the first read
                    tail = first
                else:
                    yield first
                while not relay.completed:
                    wait = min(timeouts.idle_seconds, deadline - time.perf_counter())
                    if wait <= 0:
                        raise TimeoutError
                    try:
                        with Deadline(wait) as timer:
                            # a SIGTERM drain deadline can bring it forward
                            gw.drain.track_stream_timer(timer)
                            chunk = await anext(iterator)
                    except StopAsyncIteration:
                        tail = relay.finish()  # Gemini's end of body is its end: the terminator is made here
                        break
                    finally:
                        gw.drain.untrack_stream_timer(timer)
                    out = relay.feed(chunk)
                    if limit is not None and _past(relay, limit, char_limit):
                        raise _OutputOverCap  # what passed the cap is not relayed
                    if relay.completed:
                        tail = out  # holds the terminator ([DONE], message_stop): it waits for the ledger
                    elif out:
                        yield out
                status = 200 if relay.completed else "upstream_stream_error"
                if status != 200:
                    cut = ("The upstream stream ended before it was complete.", "upstream_stream_error")
            except TimeoutError:
                if gw.drain.expired():
                    status = "sidecar_shutdown"
                    cut = ("The sidecar is shutting down; the stream was cut at its drain deadline.", status)
                else:
                    status = "upstream_stream_timeout"
                    cut = ("The upstream stream stalled and was cut.", status)
            except _OutputOverCap:
                status = OVER_CAP
                cut = (
                    "The upstream streamed more output than this request reserved; the stream was cut.",
                    OVER_CAP,
                )
            except (BadUpstreamResponse, *_TRANSPORT_ERRORS):
                status = "upstream_stream_error"
                cut = ("The upstream stream failed.", status)
            # The ledger line is written before the stream's last event leaves (ledger before reply):
            # its terminator, or the error event that ends a cut stream.
            settle(status)
            await attempt.durable()
            if tail:
                yield tail
            if cut is not None:
                yield _stream_error(op, cut[0], cut[1], relay)
        finally:
            gw.drain.inflight -= 1
            settle(status)

    return _SettlingStream(
        body(),
        lambda: settle("client_disconnect"),
        media_type="text/event-stream",
        headers=attempt.headers(),
    )


async def _release(response: OpenResponse, iterator: AsyncIterator[bytes]) -> None:
    """After a complete stream: read what the upstream still sends (a keep-alive upstream may hold
    the body open after its terminator) for a bounded time, so its connection can be reused."""
    try:
        with Deadline(_RELEASE_SECONDS):
            async for _ in iterator:
                pass
    except (TimeoutError, *_TRANSPORT_ERRORS):
        pass  # whatever follows a complete answer is not the client's concern
    finally:
        await response.aclose()


def _settle_stream(attempt: Attempt, relay: StreamRelay, status: int | str) -> None:
    target = attempt.target
    health = attempt.gw.health
    now = time.monotonic()
    if status == 200:
        health.record_success(target.connection, target.model)
    elif status in ("upstream_stream_error", "upstream_stream_timeout", OVER_CAP):
        klass: FailureClass = "timeout" if status == "upstream_stream_timeout" else "5xx"
        health.record_failure(target.connection, target.model, klass, now)
    else:
        health.release(target.connection, target.model)
    reserved = attempt.reserved_micro_usd
    bounds = attempt.bounds
    assert bounds is not None  # set by the pipeline once the upstream answered
    charge = _stream_charge(target.spec.price, relay, reserved, bounds, attempt.plan.prompt_tokens, status)
    attempt.settle(charge, status)
    attempt.accountant.finish(attempt.ctx, status)


def _stream_charge(
    price: ModelPrice | None,
    relay: StreamRelay,
    reserved: int,
    bounds: Bounds,
    prompt_estimate: int,
    status: int | str,
) -> Charge:
    """Reported usage is exact only for a complete stream. A cut one may carry just its opening
    usage (Anthropic's message_start says 1 output token; Gemini's partial chunks none), so the
    output seen counts when it is more, and the basis is then an estimate (faults 8, 27). A stream
    cut past its reserved output is anomalous: charged at most its reservation (fault 30)."""
    usage = relay.usage
    seen = estimate_output_tokens_from_chars(relay.output_chars)
    if status == OVER_CAP:
        base = usage or Usage(bounds.prompt_tokens, 0)
        output = max(base.output_tokens, seen)
        reported = base.reported or ReportedUsage(
            base.input_tokens if usage is not None else None,
            output,
            base.cached_input_tokens,
            base.cache_write_tokens,
        )
        cut = Usage(base.input_tokens, output, base.cached_input_tokens, base.cache_write_tokens)
        return anomalous_charge(
            price, flagged(cut, "output_over_cap", reported), "output_over_cap", reserved, bounds
        )
    if status != 200 and usage is not None and price is not None and usage_anomaly(usage, bounds) is None:
        if bounds.output_tokens is not None:
            seen = min(seen, bounds.output_tokens)  # the estimate errs high; the upstream did not
        if seen > usage.output_tokens:
            partial = Usage(usage.input_tokens, seen, usage.cached_input_tokens, usage.cache_write_tokens)
            return Charge(cost_micro_usd(price, partial), "estimated", partial)
    return charge_for(price, usage, reserved, prompt_estimate, relay.output_chars, bounds)
