"""The alert webhook allow-list (issue 13): a URL from a tenant's Secret may aim the operator only at
public https hosts, unless the chart's allow-list names the target. Refusals are policy decisions
checked here without sending anything; every name resolves through a fake resolver."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sluicegate_operator.alertsend import post_alert, vet
from sluicegate_operator.alerttargets import AllowListError, Refused, WebhookPolicy

DEFAULT = WebhookPolicy.build()
PUBLIC = "93.184.215.14"


def resolver(answers: dict[str, Sequence[str]], calls: list[str] | None = None):
    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in answers:
            raise OSError(f"{host} does not resolve")
        return list(answers[host])

    return resolve


def never_resolve():
    async def resolve(host: str, port: int) -> list[str]:
        raise AssertionError(f"{host} must be refused before any lookup")

    return resolve


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/x", "plain http is allowed only to allow-listed hosts"),
        ("ftp://hooks.example.com/x", "scheme 'ftp' is not https"),
        ("file:///etc/passwd", "scheme 'file' is not https"),
        ("https:///nohost", "no host"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("https://127.0.0.1/x", "127.0.0.1 is a loopback address"),
        ("https://[::1]/x", "::1 is a loopback address"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local"),
        ("https://[fe80::1]/x", "link-local"),
        ("https://10.0.0.1/x", "10.0.0.1 is a private address"),
        ("https://192.168.1.1/x", "private address"),
        ("https://[fd00::1]/x", "fd00::1 is a private address"),  # unique-local
        ("https://[::ffff:10.0.0.1]/x", "10.0.0.1 is a private address"),  # IPv4-mapped
        ("https://100.64.0.1/x", "not a public address"),  # carrier-grade NAT
        ("https://0.0.0.0/x", "not a public address"),
        ("https://kubernetes.default.svc/api", "cluster-internal name"),
        ("https://other-tenant.team-b.svc.cluster.local/x", "cluster-internal name"),
        ("https://metadata.google.internal/x", "cluster-internal name"),
        ("https://localhost/x", "cluster-internal name"),
        ("https://kubernetes/x", "single-label name"),
    ],
)
async def test_a_webhook_url_aimed_at_the_cluster_or_without_https_is_refused_before_any_lookup(
    url: str, why: str
) -> None:
    with pytest.raises(Refused) as refused:
        await vet(url, DEFAULT, never_resolve())
    assert why in str(refused.value)
    assert "allow-list" in str(refused.value) or "https" in str(refused.value) or "host" in str(refused.value)


@pytest.mark.parametrize(
    ("addresses", "why"),
    [
        (["10.3.4.5"], "resolves to 10.3.4.5 is a private address"),
        ([PUBLIC, "169.254.169.254"], "resolves to 169.254.169.254 is link-local"),  # every address counts
        (["fd12:3456::1"], "private address"),
        (["::ffff:127.0.0.1"], "127.0.0.1 is a loopback address"),
    ],
)
async def test_a_public_looking_name_resolving_to_an_internal_address_is_refused(
    addresses: list[str], why: str
) -> None:
    with pytest.raises(Refused) as refused:
        await vet("https://hooks.example.com/x", DEFAULT, resolver({"hooks.example.com": addresses}))
    assert why in str(refused.value)


async def test_the_clusters_own_ranges_are_refused_even_when_they_are_public_addresses() -> None:
    policy = WebhookPolicy.build(cluster_cidrs=["93.184.0.0/16"])
    with pytest.raises(Refused, match="in the cluster's own range"):
        await vet("https://hooks.example.com/x", policy, resolver({"hooks.example.com": [PUBLIC]}))


async def test_an_https_host_whose_every_address_is_public_is_allowed_by_default() -> None:
    target, addresses = await vet(
        "https://hooks.example.com/services/T0/B0", DEFAULT, resolver({"hooks.example.com": [PUBLIC]})
    )
    assert (target.host, target.port, addresses) == ("hooks.example.com", 443, (PUBLIC,))


@pytest.mark.parametrize(
    ("allow", "url", "answers"),
    [
        (["alerts.corp.example"], "http://alerts.corp.example:8080/x", {"alerts.corp.example": ["10.1.2.3"]}),
        (["*.corp.example"], "http://pager.team.corp.example/x", {"pager.team.corp.example": ["10.9.9.9"]}),
        (["10.20.0.0/16"], "http://relay.example.com/x", {"relay.example.com": ["10.20.3.4"]}),
        (["10.20.0.0/16"], "http://10.20.3.4:9000/x", {}),
        (
            ["alertmanager.monitoring.svc"],
            "http://alertmanager.monitoring.svc:9093/x",
            {"alertmanager.monitoring.svc": ["10.96.4.4"]},
        ),
    ],
)
async def test_an_allow_listed_target_may_be_internal_and_use_http(
    allow: list[str], url: str, answers: dict[str, list[str]]
) -> None:
    target, addresses = await vet(url, WebhookPolicy.build(allow), resolver(answers))
    assert addresses


async def test_an_allow_listed_range_does_not_admit_a_name_that_also_resolves_outside_it() -> None:
    policy = WebhookPolicy.build(["10.20.0.0/16"])
    answers = {"relay.example.com": ["10.20.3.4", "10.99.0.1"]}
    with pytest.raises(Refused, match="10.99.0.1 is a private address"):
        await vet("https://relay.example.com/x", policy, resolver(answers))


@pytest.mark.parametrize("entry", ["http://x.example", "a..b", "10.0.0.0/99"])
def test_an_allow_list_entry_that_is_no_host_suffix_or_cidr_is_an_error(entry: str) -> None:
    with pytest.raises(AllowListError):
        WebhookPolicy.build([entry])


async def test_post_alert_reports_a_refusal_without_the_url_and_sends_nothing() -> None:
    calls: list[str] = []
    problem = await post_alert(
        "https://hooks.example.com/secret-token-path",
        {"text": "hi"},
        DEFAULT,
        timeout_seconds=1,
        resolve=resolver({"hooks.example.com": ["10.0.0.9"]}, calls),
    )
    assert problem.startswith("refused: 'hooks.example.com' resolves to 10.0.0.9 is a private address")
    assert "secret-token-path" not in problem
    assert calls == ["hooks.example.com"]
