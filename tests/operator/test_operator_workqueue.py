from __future__ import annotations

from sluicegate_operator.workqueue import Work, WorkQueue, jittered


def drain(queue, now):
    out = []
    while isinstance(item := queue.pop(now), Work):
        out.append(item.namespace)
        queue.done(item.namespace)
    return out, item


def test_a_tenant_edit_goes_ahead_of_a_queued_wave():
    queue = WorkQueue(wave_rate=100.0, wave_burst=100.0)
    for i in range(5):
        queue.add(f"ns-{i}", urgent=False)
    queue.add("edited", urgent=True, cause=("obj", "7"))
    first = queue.pop(0.0)
    assert first == Work("edited", True, frozenset({("obj", "7")}))


def test_a_wave_is_paced_to_its_rate_after_the_burst():
    queue = WorkQueue(wave_rate=2.0, wave_burst=3.0)
    for i in range(10):
        queue.add(f"ns-{i}", urgent=False)
    started, wait = drain(queue, 0.0)
    assert started == ["ns-0", "ns-1", "ns-2"] and wait == 0.5
    assert drain(queue, 1.0)[0] == ["ns-3", "ns-4"]


def test_urgent_work_is_never_paced():
    queue = WorkQueue(wave_rate=0.001, wave_burst=1.0)
    for i in range(20):
        queue.add(f"ns-{i}", urgent=True)
    assert len(drain(queue, 0.0)[0]) == 20


def test_a_namespace_is_queued_once_and_upgraded_by_an_edit():
    queue = WorkQueue(wave_rate=1.0, wave_burst=1.0)
    queue.add("a", urgent=False)
    queue.add("b", urgent=False)
    queue.add("b", urgent=True, cause="x")
    assert len(queue) == 2
    assert queue.pop(0.0) == Work("b", True, None)  # the wave's reconcile is unconditional


def test_a_namespace_being_reconciled_is_held_until_done():
    queue = WorkQueue(wave_rate=10.0)
    queue.add("a", urgent=True, cause="x")
    work = queue.pop(0.0)
    queue.add("a", urgent=True, cause="y")
    assert queue.pop(0.0) is None  # never twice at once
    queue.done(work.namespace)
    assert queue.pop(0.0) == Work("a", True, frozenset({"y"}))


def test_jitter_only_ever_shortens_by_at_most_a_fifth():
    assert jittered(600.0, 0.0) == 600.0
    assert 480.0 <= jittered(600.0, 0.999) < 600.0
