"""The MutatingWebhookConfiguration selects exactly the opted-in Pods and trusts the certificate it gets."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

NAMESPACE = "sluicegate-system"
INJECT_LABEL = ("sluicegate.io/inject", "true")


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels AND every matchExpression)."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _namespace_labels(name: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": name}


def _webhook(manifest: Any) -> dict[str, Any]:
    config = manifest.one("MutatingWebhookConfiguration", "sluicegate")
    assert len(config["webhooks"]) == 1
    return config["webhooks"][0]


def test_selector_matches_pods_with_the_inject_label_and_no_others(render: Any) -> None:
    selector = _webhook(render())["objectSelector"]
    key, value = INJECT_LABEL
    assert _matches(selector, {key: value, "app": "chat"})
    assert not _matches(selector, {"app": "chat"})
    assert not _matches(selector, {key: "false"})
    assert not _matches(selector, {key: "True"})


def test_webhook_skips_the_operator_namespace_and_kube_system(render: Any) -> None:
    selector = _webhook(render())["namespaceSelector"]
    assert _matches(selector, _namespace_labels("team-a"))
    assert not _matches(selector, _namespace_labels(NAMESPACE))
    assert not _matches(selector, _namespace_labels("kube-system"))


def test_namespaced_operator_injects_only_in_watched_namespaces(render: Any) -> None:
    selector = _webhook(render({"operator": {"watchNamespaces": ["team-a"]}}))["namespaceSelector"]
    assert _matches(selector, _namespace_labels("team-a"))
    assert not _matches(selector, _namespace_labels("team-b"))


def test_webhook_intercepts_pod_creation_only(render: Any) -> None:
    webhook = _webhook(render())
    assert webhook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert webhook["sideEffects"] == "None"
    assert webhook["admissionReviewVersions"] == ["v1"]


def test_failure_policy_timeout_and_path_come_from_values(render: Any) -> None:
    webhook = _webhook(render())
    assert webhook["failurePolicy"] == "Fail"
    custom = _webhook(
        render({"webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 3, "path": "/mutate"}})
    )
    assert custom["failurePolicy"] == "Ignore"
    assert custom["timeoutSeconds"] == 3
    assert custom["clientConfig"]["service"]["path"] == "/mutate"


def test_webhook_calls_the_webhook_service_on_443(render: Any) -> None:
    manifest = render()
    service_ref = _webhook(manifest)["clientConfig"]["service"]
    assert service_ref == {
        "name": "sluicegate-webhook",
        "namespace": NAMESPACE,
        "path": "/mutate-pods",
        "port": 443,
    }
    assert manifest.one("Service", "sluicegate-webhook")["spec"]["ports"][0]["port"] == 443


def _certificate(data: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(data))


def _verify_signed_by(cert: x509.Certificate, ca: x509.Certificate) -> None:
    key = ca.public_key()
    assert cert.signature_hash_algorithm is not None
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(
            cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm
        )
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    else:  # pragma: no cover - helm's genCA makes RSA keys
        pytest.fail(f"unexpected CA key type {type(key)}")


@pytest.mark.parametrize("service", ["sluicegate-webhook", "sluicegate-keys"])
def test_generated_certificates_name_their_service_and_chain_to_the_ca_bundle(
    render: Any, service: str
) -> None:
    manifest = render()
    ca = _certificate(_webhook(manifest)["clientConfig"]["caBundle"])
    secret = manifest.one("Secret", f"{service}-tls")
    assert secret["type"] == "kubernetes.io/tls"
    cert = _certificate(secret["data"]["tls.crt"])
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert f"{service}.{NAMESPACE}.svc" in names
    assert service in names
    _verify_signed_by(cert, ca)
    assert _certificate(secret["data"]["ca.crt"]) == ca
    assert cert.not_valid_after_utc > cert.not_valid_before_utc


def test_a_certificate_for_one_service_is_not_valid_for_the_other(render: Any) -> None:
    cert = _certificate(render().one("Secret", "sluicegate-keys-tls")["data"]["tls.crt"])
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert not [n for n in names if n.startswith("sluicegate-webhook")]


def test_cert_manager_mode_issues_certificates_and_injects_the_ca(render: Any) -> None:
    manifest = render({"certManager": {"enabled": True}})
    config = manifest.one("MutatingWebhookConfiguration", "sluicegate")
    assert (
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        == f"{NAMESPACE}/sluicegate-webhook"
    )
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    assert manifest.find("Secret") == []
    for service in ["sluicegate-webhook", "sluicegate-keys"]:
        certificate = manifest.one("Certificate", service)
        assert certificate["spec"]["secretName"] == f"{service}-tls"
        assert f"{service}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
        assert certificate["spec"]["issuerRef"]["name"] == "sluicegate-ca"
    assert manifest.one("Certificate", "sluicegate-ca")["spec"]["isCA"] is True


def test_cert_manager_can_use_an_existing_issuer(render: Any) -> None:
    manifest = render(
        {"certManager": {"enabled": True, "issuerRef": {"kind": "ClusterIssuer", "name": "corp-ca"}}}
    )
    assert manifest.find("Issuer") == []
    refs = [c["spec"]["issuerRef"] for c in manifest.find("Certificate")]
    assert refs == [{"kind": "ClusterIssuer", "name": "corp-ca", "group": "cert-manager.io"}] * 2
