"""Who a request is for: the Pod, then the X-Sluicegate-* headers and the Portkey / TOLVYN aliases."""

from __future__ import annotations

from sluicegate_sidecar.attribution import Attribution, PodIdentity, attribute

POD = PodIdentity(namespace="shop", workload="checkout", labels={"app": "checkout"})


def test_headers_name_the_dimensions_and_tags_sluicegate_winning_over_its_alias() -> None:
    found = attribute(
        POD,
        {
            "x-tolvyn-team": "payments",
            "x-sluicegate-team": " growth ",
            "x-tolvyn-user": "u1",
            "x-portkey-metadata": '{"env": "prod"}',
            "x-sluicegate-tags": '{"ticket": 42}',
        },
    )
    assert found.pod is POD
    assert dict(found.dimensions) == {"team": "growth", "user": "u1"}
    assert dict(found.tags) == {"portkey_env": "prod", "ticket": "42"}


def test_a_request_without_attribution_headers_is_the_pods_alone_whatever_came_before() -> None:
    other = PodIdentity(namespace="other")
    plain = {"content-type": "application/json", "x-portkey-provider": "openai", "x-request-id": "r1"}
    first = attribute(POD, plain)
    attribute(POD, {"x-sluicegate-user": "u9"})
    assert attribute(POD, {}) == first == Attribution(pod=POD, dimensions={}, tags={})
    assert attribute(other, plain) == Attribution(pod=other, dimensions={}, tags={})
    assert attribute(POD, plain).pod is POD
