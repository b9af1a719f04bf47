"""The sidecar's authority client: no network while a lease covers requests; one sync for many waiters."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime

import msgspec

from sluicegate_contract.authority import AuthorityError, SyncReply, SyncRequest
from sluicegate_sidecar.authorityclient import AuthorityClient
from sluicegate_sidecar.ladder import ScopeKey
from sluicegate_sidecar.leases import LeaseSettings
from sluicegate_sidecar.ledgership import LedgerShipper
from sluicegate_sidecar.serve_cli import authority_verify
from tests.sidecar.test_sidecar_ledgership import write
from tests.support.authorityserver import CAP, FakeAuthority, Reply, Sent, serving
from tests.support.kmocksupport import make_tls
from tests.support.sidecar_harness import free_port

KEY = ScopeKey("team-cap", "", "day", datetime(2026, 12, 6, tzinfo=UTC))


async def test_requests_covered_by_the_lease_make_no_call_to_the_authority(authority) -> None:
    fake = FakeAuthority()
    authority.answer = fake.handle
    client = AuthorityClient([authority.url], "s1", lambda: "default", LeaseSettings(refresh_seconds=10))
    try:
        await client.cover((KEY,), 2_000, 100)  # the first request: one request's worth
        taken = client.take((KEY,), 2_000)
        assert taken is not None
        client.put(taken, 2_000, 1_500)
        client.recorded(taken, 2_000, 1_500)
        for _ in range(100):
            covered = client.room(KEY) >= 2_000
            before = fake.syncs
            await client.cover((KEY,), 2_000, 100)
            if covered:
                assert fake.syncs == before  # the hot path: no network while the lease covers it
            taken = client.take((KEY,), 2_000)
            assert taken is not None
            client.put(taken, 2_000, 1_000)
            client.recorded(taken, 2_000, 1_000)
        assert fake.syncs <= 5  # slices grow with demand: a few syncs for a hundred requests
    finally:
        await client.close()


async def test_requests_waiting_for_room_share_one_sync(authority) -> None:
    fake = FakeAuthority()
    authority.answer = fake.handle
    client = AuthorityClient([authority.url], "s1", lambda: "default", LeaseSettings(refresh_seconds=10))
    try:
        await asyncio.gather(*(client.cover((KEY,), 2_000, 100) for _ in range(50)))
        assert fake.syncs <= 2
    finally:
        await client.close()


async def test_an_unreachable_authority_is_reported_as_such() -> None:
    nothing_listens = f"http://127.0.0.1:{free_port()}"  # connections are refused
    client = AuthorityClient([nothing_listens], "s1", lambda: "default")
    try:
        await client.cover((KEY,), 2_000, 100)
        assert client.shortfall(KEY, 100) == "budget_authority_unavailable"
        assert client.take((KEY,), 100) is None
    finally:
        await client.close(patience=0.2)


async def test_syncs_carry_the_projected_token_rereading_it_when_the_kubelet_rotates_it(
    tmp_path, authority
) -> None:
    fake, seen = FakeAuthority(), []

    def handle(sent: Sent) -> Reply:
        seen.append(sent.headers.get("Authorization"))
        return fake.handle(sent)

    authority.answer = handle
    token = tmp_path / "token"
    token.write_text("first-token\n")
    client = AuthorityClient(
        [authority.url], "s1", lambda: "default", LeaseSettings(refresh_seconds=10), token_file=token
    )
    try:
        await client.cover((KEY,), 2_000, 100)
        token.write_text("rotated-token\n")
        await client.cover((KEY,), CAP // 2, CAP // 2)  # more than the lease holds: a sync
    finally:
        await client.close()
    assert seen[:2] == ["Bearer first-token", "Bearer rotated-token"]


async def test_an_authority_certificate_signed_by_the_given_ca_is_trusted_and_others_are_not(
    tmp_path,
) -> None:
    tls = make_tls(tmp_path, "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.cert_path), str(tls.key_path))
    async with serving(FakeAuthority().handle, tls=context) as served:
        url = served.url
        for verify, trusted in [(authority_verify(str(tls.ca_path), None), True), (True, False)]:
            client = AuthorityClient([url], "s1", lambda: "default", verify=verify)
            try:
                await client.cover((KEY,), 2_000, 100)
                assert (client.take((KEY,), 100) is not None) is trusted
            finally:
                await client.close(patience=0.2)
        pem = tls.ca_path.read_text()  # the key service's CA as the webhook injects it (env PEM)
        client = AuthorityClient([url], "s1", lambda: "default", verify=authority_verify(None, pem))
        try:
            await client.cover((KEY,), 2_000, 100)
            assert client.take((KEY,), 100) is not None
        finally:
            await client.close(patience=0.2)


async def test_ledger_entries_the_authority_refuses_do_not_hold_up_the_leases(
    tmp_path, caplog, authority
) -> None:
    await write(tmp_path, 3)  # the ledger has lines to ship with the next sync
    fake = FakeAuthority()
    carried: list[int] = []

    def refuse_entries(sent: Sent) -> Reply:
        sync = msgspec.json.decode(sent.content, type=SyncRequest)
        carried.append(len(sync.entries))
        if sync.entries:  # as the authority answers a batch it cannot take (ledgerstore.EntriesRefused)
            error = AuthorityError(error="invalid_request", message="ledger entries refused: entry 1")
            return 400, msgspec.json.encode(error)
        return fake.handle(sent)

    authority.answer = refuse_entries
    client = AuthorityClient(
        [authority.url], "s1", lambda: "default", LeaseSettings(refresh_seconds=10),
        shipper=LedgerShipper(tmp_path, "s1"),
    )  # fmt: skip
    try:
        await client.cover((KEY,), 2_000, 100)
        assert client.shortfall(KEY, 2_000) is None  # served: not a 503 budget_authority_unavailable
        assert carried == [3, 0]  # the asks went again, alone
        assert "refused a sync carrying 3 ledger entries" in caplog.text
        assert client.shipper is not None and client.shipper.behind  # the lines wait on the volume
        await client.sync()
        assert carried[-1] == 0  # shipping paused: the next syncs are not refused for them again
    finally:
        await client.close(patience=0.2)


async def test_a_ledger_more_than_a_batch_behind_is_shipped_without_waiting_a_period_per_batch(
    tmp_path, authority
) -> None:
    """A sidecar serving more requests a refresh period than one sync's batch must not fall ever
    further behind: while the authority acknowledges full batches, the next sync follows at once."""
    await write(tmp_path, 25)
    fake = FakeAuthority()
    shipped: list[int] = []

    def acknowledge(sent: Sent) -> Reply:
        sync = msgspec.json.decode(sent.content, type=SyncRequest)
        seqs = [msgspec.json.decode(bytes(raw), type=dict)["seq"] for raw in sync.entries]
        shipped.extend(seqs)
        reply = msgspec.json.decode(fake.handle(sent)[1], type=SyncReply)
        acked = msgspec.structs.replace(reply, ledger_acked_seq=max(seqs) if seqs else None)
        return 200, msgspec.json.encode(acked)

    authority.answer = acknowledge
    client = AuthorityClient(
        [authority.url], "s1", lambda: "default", LeaseSettings(refresh_seconds=30),
        shipper=LedgerShipper(tmp_path, "s1", batch_max=10),
    )  # fmt: skip
    runner = asyncio.create_task(client.run())
    try:
        for _ in range(100):  # 2 s, where one batch per 30 s period would take a minute and a half
            if len(shipped) >= 25:
                break
            await asyncio.sleep(0.02)
        assert shipped == list(range(1, 26))  # every line once, in order
        assert client.shipper is not None and client.shipper.acked == 25
        syncs = fake.syncs
        await asyncio.sleep(0.3)
        assert fake.syncs == syncs  # caught up: back to one sync a period
    finally:
        runner.cancel()
        await client.close(patience=0.2)
