"""The thread tuner follows measured step times (fed here, so the test does not time anything)."""
import math
import os
import random

import pytest
import torch

from djanet import threads
from djanet.config import get_config
from djanet.threads import ThreadTuner, cpu_times, free_cores, set_threads


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def run(tuner: ThreadTuner, seconds_for: dict[int, float], steps: int) -> list[int]:
    used = []
    for _ in range(steps):
        threads = tuner.before_step()
        used.append(threads)
        tuner.after_step(seconds_for[threads])
    return used


def test_idle_machine_keeps_all_cores_and_backs_off_probing():
    # probe_share=1: probes may cost as much as the steps between them, so the short intervals rule
    tuner = ThreadTuner(candidates=(2, 1), probe_steps=2, first_interval=4, max_interval=16, probe_share=1.0)
    used = run(tuner, {2: 0.45, 1: 0.82}, 1 + 4 + 4)
    # warm-up (not measured), then 2 steps at each count, then the faster one
    assert used[:5] == [2, 2, 2, 1, 1]
    assert tuner.choice == 2 and tuner.reference == 0.45
    assert used[5:] == [2, 2, 2, 2]
    run(tuner, {2: 0.45, 1: 0.82}, 4)        # second probe confirms: the interval doubles
    assert tuner.choice == 2 and tuner.interval == 8
    assert tuner.summary()[1] == 4 and tuner.log[0] == (2, 0.45)


def test_busy_neighbour_switches_to_one_thread_at_once():
    tuner = ThreadTuner(candidates=(2, 1), probe_steps=2, first_interval=50)
    run(tuner, {2: 0.45, 1: 0.82}, 5)
    assert tuner.choice == 2
    # a neighbour starts: two threads now wait on each other; three slow steps trigger a probe
    used = run(tuner, {2: 1.48, 1: 0.88}, 3 + 4)
    assert used[3:] == [1, 1, 2, 2]           # the other count first, the current one last
    assert tuner.choice == 1 and tuner.reference == 0.88
    assert tuner.before_step() == 1 and torch.get_num_threads() == 1


def test_a_count_that_collapses_beside_a_neighbour_costs_one_step_per_run():
    """Measured in notebook 2 beside a busy process: 25-step blocks of translator training took 4.6 s
    on one thread and 20-35 s with a probe of two threads in them (one two-thread step ~15 s)."""
    tuner = ThreadTuner(candidates=(2, 1), first=1)       # free_cores() said one core is free
    used = run(tuner, {2: 15.0, 1: 0.18}, 300)
    assert used[:5] == [1, 1, 1, 2, 1]    # warm-up, two steps on one thread, one on two: abandoned
    assert used.count(2) == 1 and tuner.choice == 1
    # a probe would cost 14.8 s: not again before it is a tenth of the time spent between probes
    assert tuner.spacing == math.ceil((15.0 - 0.18) / (0.1 * 0.18)) > 300


def test_jitter_of_the_chosen_count_does_not_trigger_costly_probes():
    tuner = ThreadTuner(candidates=(2, 1), first=1)
    rng = random.Random(0)
    used = []
    for _ in range(300):
        threads = tuner.before_step()
        used.append(threads)
        tuner.after_step(15.0 if threads == 2 else 0.18 * rng.uniform(0.8, 2.0))
    assert used.count(2) == 1


def test_one_core_never_probes():
    tuner = ThreadTuner(candidates=(1, 1))
    assert not tuner.enabled
    assert set(run(tuner, {1: 0.5}, 10)) == {1}


def test_bad_candidates_and_config_values_are_named():
    with pytest.raises(ValueError, match="candidates"):
        ThreadTuner(candidates=(0, 1))
    with pytest.raises(ValueError, match="threads='many'"):
        get_config("tiny", threads="many")
    assert get_config("tiny", threads="auto").threads == "auto"


def test_set_threads_auto_takes_the_cores_free_now(monkeypatch):
    set_threads(1)
    assert torch.get_num_threads() == 1
    monkeypatch.setattr(threads, "free_cores", lambda: 2)
    set_threads("auto")
    assert torch.get_num_threads() == 2
    monkeypatch.setattr(threads, "free_cores", lambda: 1)     # a neighbour started
    set_threads("auto")
    assert torch.get_num_threads() == 1
    set_threads(None)   # leaves it
    assert torch.get_num_threads() == 1


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs an affinity mask (Linux)")
def test_free_cores_counts_the_ticks_other_processes_kept_busy(monkeypatch):
    cpus = sorted(os.sched_getaffinity(0))
    monkeypatch.setattr(threads, "available_cores", lambda: len(cpus))

    def reads(busy_cpus: int):
        snapshots = iter([{c: (0, 0) for c in cpus},
                          {c: (100 if i < busy_cpus else 3, 100) for i, c in enumerate(cpus)}])
        return lambda: next(snapshots)

    assert free_cores(0.02, read=reads(0)) == len(cpus)
    assert free_cores(0.02, read=reads(1)) == max(1, len(cpus) - 1)
    assert free_cores(0.02, read=reads(len(cpus))) == 1             # never fewer than one
    assert free_cores(0.02, read=lambda: None) == len(cpus)         # no /proc/stat: every core
    ticks = cpu_times()
    if ticks is not None:                                           # the real file parses
        assert set(cpus) <= set(ticks) and all(0 <= b <= t for b, t in ticks.values())


@pytest.mark.slow
def test_fit_with_auto_threads_records_the_counts_it_ran(tmp_path, monkeypatch):
    """threads="auto" in a real (tiny) run: the tuner probes and the history says which count ran."""
    from djanet import threads
    from djanet.train import fit

    made = []

    class Recording(ThreadTuner):
        def __init__(self, first=None):
            # fit starts the tuner at the cores free now; the probe order is fixed here so the
            # test does not depend on what else this machine runs
            assert first in (1, 2, threads.available_cores())
            super().__init__(candidates=(2, 1), probe_steps=1)
            made.append(self)

    monkeypatch.setattr(threads, "ThreadTuner", Recording)   # what fit's tuner_for builds
    cfg = get_config("tiny", threads="auto", device="cpu", cache_dir=str(tmp_path / "cache"),
                     out_dir=str(tmp_path), max_steps_per_epoch=3, eval_every=0)
    history = fit(cfg)
    (tuner,) = made
    # 6 steps: the first is the warm-up, then one probe step at 2 threads and one at 1, then the faster
    assert [t for t, _ in tuner.log][:2] == [2, 1]
    assert len(tuner.log) == 5 and tuner.choice in (1, 2)
    assert history["threads"].tolist()[-1] == tuner.choice
    assert history["loss_total"].notna().all()
