from __future__ import annotations

import pytest

from sluicegate_cli.main import main as sluicegate


def test_help_describes_running_locally_against_a_kubeconfig(capsys):
    with pytest.raises(SystemExit) as info:
        sluicegate(["operator", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for phrase in (
        "kubeconfig",
        "--context",
        "--namespace",
        "--all-namespaces",
        "--standalone",
        "kubectl apply -f crds/",
    ):
        assert phrase in text


def test_running_without_a_namespace_choice_says_what_to_add(capsys):
    assert sluicegate(["operator"]) == 2
    assert "--namespace NS or --all-namespaces" in capsys.readouterr().err


def test_a_webhook_certificate_without_its_key_is_refused(capsys):
    with pytest.raises(SystemExit, match="--webhook-cert and --webhook-key go together"):
        sluicegate(["operator", "--all-namespaces", "--webhook-cert", "tls.crt"])
