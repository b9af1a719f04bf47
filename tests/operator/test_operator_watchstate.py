from __future__ import annotations

from sluicegate_operator.watchstate import Change, WatchIndex, WriteLog


def connection(secret):
    return {"spec": {"apiKeySecretRef": {"name": secret, "key": "apiKey"}}}


def test_a_secret_is_referenced_while_a_connection_names_it():
    index = WatchIndex()
    index.note_resource("providerconnections", "a", "openai", connection("key"))
    index.note_resource("providerconnections", "a", "backup", connection("key"))
    index.note_resource("providerconnections", "a", "openai", connection("other"))
    assert index.is_referenced("a", "key") and index.is_referenced("a", "other")
    index.note_resource("providerconnections", "a", "backup", None)
    assert not index.is_referenced("a", "key") and not index.is_referenced("b", "other")
    index.note_resource("providerconnections", "a", "openai", None)
    assert not index.has_resources("a") and index.namespaces == []


def test_a_listing_tells_first_sight_from_a_change_missed_while_away():
    index = WatchIndex()
    key = ("routingtiers", "a", "light")
    assert index.observe(key, "5", None) is Change.NEW
    assert index.observe(key, "5", None) is Change.NONE
    assert index.observe(key, "9", None) is Change.CHANGED
    assert index.observe(key, "10", "MODIFIED") is Change.CHANGED
    assert index.observe(key, "10", "DELETED") is Change.CHANGED
    assert index.observe(key, "11", None) is Change.NEW


def test_policies_are_kept_per_namespace_as_last_seen():
    index = WatchIndex()
    index.note_resource("budgetpolicies", "a", "monthly", {"spec": {"v": 1}})
    index.note_resource("budgetpolicies", "a", "monthly", {"spec": {"v": 2}})
    assert index.policy_namespaces() == ["a"] and index.policies("a") == [{"spec": {"v": 2}}]
    index.forget_namespace("a")
    assert index.policy_namespaces() == []


def test_a_version_a_reconcile_read_is_settled_until_it_changes():
    index = WatchIndex()
    key = ("routingtiers", "a", "light")
    index.note_read(key, "7")
    assert index.was_read(key, "7") and not index.was_read(key, "8")
    index.observe(key, "7", "DELETED")
    assert not index.was_read(key, "7")


def test_only_the_versions_the_operator_wrote_are_its_own():
    writes = WriteLog()
    key = ("secrets", "a", "sluicegate-config")
    for version in ("1", "2", "3", "4", "5"):
        writes.record(key, version)
    assert writes.is_own(key, "5") and writes.is_own(key, "2")
    assert not writes.is_own(key, "1")  # only the last few are kept
    assert not writes.is_own(key, "6") and not writes.is_own(("secrets", "b", "sluicegate-config"), "5")
    writes.forget_namespace("a")
    assert not writes.is_own(key, "5")
