"""Fleet mode's hook in the budget book: the room of an Enforce scope comes from a lease of the budget
authority. Pure: the protocol only; ``authorityclient.AuthorityClient`` implements it.
"""

from __future__ import annotations

from typing import Literal, Protocol

from .ladder import ScopeKey

FleetRefusal = Literal["kill_switch", "budget_exceeded", "budget_authority_unavailable"]


class FleetRoom(Protocol):
    """Fleet mode: the room of Enforce scopes comes from leases of the budget authority, not from this
    sidecar's own tallies. Implemented by ``authorityclient.AuthorityClient``."""

    def room(self, key: ScopeKey) -> int:
        """What may be reserved on the scope's lease now, locally (no network)."""
        ...

    def fleet_room(self, key: ScopeKey) -> int | None:
        """The fleet's room as last seen (for verdicts only); None before the first sync."""
        ...

    def standing(self, key: ScopeKey) -> tuple[int | None, bool]:
        """(``fleet_room``, whether the authority has seen a kill switch on it): a verdict's one look."""
        ...

    def shortfall(self, key: ScopeKey, amount: int) -> FleetRefusal | None:
        """Why ``amount`` does not fit the lease: kill_switch, budget_exceeded or the authority."""
        ...

    def take(self, keys: tuple[ScopeKey, ...], amount: int) -> tuple[str, ...] | None:
        """Reserve ``amount`` on the lease of every key, or on none (journaled before the request can
        reach a provider)."""
        ...

    def try_take(self, keys: tuple[ScopeKey, ...], amount: int) -> tuple[str, ...] | None:
        """``take`` when every lease covers ``amount`` now and the authority answers: the common case,
        with no refusal to explain and no fall-back to open. None: nothing taken (see ``shortfall``)."""
        ...

    def put(self, leases: tuple[str, ...], amount: int, actual: int) -> None:
        """The reservation settled at ``actual`` (0: released), in memory."""
        ...

    def recorded(self, leases: tuple[str, ...], amount: int, actual: int) -> None:
        """A reservation of ``amount`` on ``leases`` settled at ``actual`` and its ledger line is
        written (or it cost nothing): a restart need not count it at its worst case any more, so the
        rest of the reservation is free on the leases from now on."""
        ...

    def worth_waiting(self, keys: tuple[ScopeKey, ...], need: int) -> bool:
        """True when ``need`` does not fit now but leases out in the fleet may settle for less."""
        ...

    async def wait(self, keys: tuple[ScopeKey, ...], want: int, need: int, seconds: float) -> None:
        """Ask for ``want`` (at least ``need``) at the next sync and wait for it, at most ``seconds``."""
        ...

    async def cover(self, keys: tuple[ScopeKey, ...], want: int, need: int) -> None:
        """Top the leases up to ``want`` (at least ``need``) now when they hold less: one sync."""
        ...
