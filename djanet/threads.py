"""torch's CPU thread count, chosen from measured step times (`threads="auto"`).

No fixed thread count is right for both an idle and a busy machine. On an idle 2-core CPU two
threads nearly halve a training step; beside a process that holds one core, two threads are
slower than one, because OpenMP's threads wait for each other while the neighbour holds a core.
And a neighbour can start or stop in the middle of a run. So `ThreadTuner` times the training
steps under each candidate count, keeps the faster one and probes the others again now and then:
sooner when the current choice slows down, less often while they keep losing.

Beside a busy neighbour a losing count can cost far more than it saves (a translator step on two
threads can take many times as long as on one). So a probe stops running a count that is more
than twice as slow as the best known, the tuner starts at the cores `free_cores` finds idle, and
probes are spaced so that what the losing counts cost stays within a tenth of the time between
probes. Outside training (evaluation, feature extraction), "auto" is simply the cores free at
that moment.

Changing the thread count changes the order of floating-point reductions, so an "auto" run is not
bit-for-bit repeatable on CPU; set `threads=1` where that matters (the tests and the ablation
study do). `python benchmarks/bench_train.py --threads` measures the counts side by side.
"""
from __future__ import annotations

import math
import os
import statistics
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

import torch

AUTO = "auto"


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_times(stat: str = "/proc/stat") -> dict[int, tuple[int, int]] | None:
    """Busy and total clock ticks of each CPU since boot (Linux); None where there is no such file."""
    try:
        lines = Path(stat).read_text().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        name, *ticks = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            t = [int(v) for v in ticks[:8]]           # user nice system idle iowait irq softirq steal
            out[int(name[3:])] = (sum(t) - t[3] - t[4], sum(t))
    return out


def free_cores(interval: float = 0.1, read=cpu_times) -> int:
    """Cores of this process's share that other processes left idle over the next `interval` s.

    Busy ticks of each CPU from `read` (/proc/stat), less this process's own CPU time over the
    same interval; at least 1.  Where the file is missing (macOS, Windows): every available core.
    """
    cores = available_cores()
    before, own_start, start = read(), time.process_time(), time.perf_counter()
    if before is None:
        return cores
    time.sleep(interval)
    after = read()
    own = (time.process_time() - own_start) / max(time.perf_counter() - start, 1e-9)  # cores we used
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:
        cpus = set(after)
    busy = 0.0
    for cpu in cpus & set(before) & set(after):
        ticks = after[cpu][1] - before[cpu][1]
        if ticks > 0:
            busy += (after[cpu][0] - before[cpu][0]) / ticks
    return max(1, min(cores, cores - round(max(0.0, busy - own))))


def set_threads(threads: int | str | None) -> None:
    """Set torch's CPU threads: an int; "auto": the cores no other process is busy on right now
    (`free_cores`; in training a `ThreadTuner` then follows the step times); None leaves torch's
    default (one per core).

    Why "auto" measures: with a neighbour busy on one of two cores, two OpenMP threads wait for
    each other at every parallel region, and evaluating a cpu-demo checkpoint took 17.2 s with
    two threads against 10.2 s with one (7.6 s with two on an idle machine).
    """
    count = free_cores() if threads == AUTO else threads
    if count is not None and torch.get_num_threads() != count:
        torch.set_num_threads(count)


class ThreadTuner:
    """Picks the fastest of `candidates` thread counts from the steps it is shown.

    Call `before_step()` before each step (it sets torch's thread count) and `after_step(seconds)`
    with the step's duration. Each probe runs `probe_steps` steps per candidate (the first step of
    a run, which builds kernels, is not measured); between probes the winner runs for `interval`
    steps, doubling up to `max_interval` each time the winner is confirmed, and a probe starts at
    once when the winner's recent median exceeds `slowdown` x its time in the last probe and the
    time it lost since exceeds what the last probe's losing counts cost.  `first` is the count to
    start with; a count whose probe step takes over `abandon` x the best known is dropped from that
    probe; and probes are never closer than the steps that keep the losing counts' cost within
    `probe_share` of the time between probes.
    """

    def __init__(self, candidates: tuple[int, ...] | None = None, probe_steps: int = 2,
                 first_interval: int = 20, max_interval: int = 80, slowdown: float = 1.5,
                 first: int | None = None, probe_share: float = 0.1, abandon: float = 2.0):
        cores = available_cores()
        cands = candidates if candidates is not None else (cores, 1)
        if first is not None:       # the count to start with (the others are probed after it)
            cands = (first, *cands)
        self.candidates = tuple(dict.fromkeys(int(c) for c in cands))
        if not self.candidates or min(self.candidates) < 1:
            raise ValueError(f"ThreadTuner candidates={cands!r}; expected thread counts >= 1")
        self.probe_steps, self.first_interval = probe_steps, first_interval
        self.max_interval, self.slowdown = max_interval, slowdown
        self.probe_share, self.abandon = probe_share, abandon
        self.interval = first_interval
        self.probe_cost = 0.0                       # seconds the last probe's losing counts cost
        self.choice = self.candidates[0]
        self.reference: float | None = None        # the winner's time in the last probe
        self.recent: list[float] = []               # the winner's steps since then
        self.queue: list[int] = []                  # thread counts of the coming probe steps
        self.probe: dict[int, list[float]] = {}
        self.since_probe = 0
        self.warm = False
        self.log: list[tuple[int, float]] = []      # (threads, seconds) of every measured step
        self._start_probe()

    @property
    def enabled(self) -> bool:
        return len(self.candidates) > 1

    @property
    def spacing(self) -> int:
        """Steps between probes that keep the losing counts' cost within `probe_share` of them."""
        if not self.reference:
            return 0
        return math.ceil(self.probe_cost / (self.probe_share * self.reference))

    def _start_probe(self) -> None:
        self.probe = {c: [] for c in self.candidates}
        # the first probe in the given order; later ones end on the current choice, the count most
        # likely to run next
        order = (list(self.candidates) if self.reference is None
                 else [c for c in self.candidates if c != self.choice] + [self.choice])
        self.queue = [c for c in order for _ in range(self.probe_steps)]

    def before_step(self) -> int:
        """Set and return the thread count for the next step."""
        threads = self.queue[0] if self.queue else self.choice
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        return threads

    def after_step(self, seconds: float) -> None:
        """Record the duration of the step that `before_step` prepared."""
        threads = torch.get_num_threads()
        if not self.warm:          # the first step builds kernels and caches: not a measurement
            self.warm = True
            return
        self.log.append((threads, seconds))
        if not self.enabled:
            return
        if self.queue:
            self.queue.pop(0)
            self.probe[threads].append(seconds)
            # a count far slower than the best known is not run again in this probe: beside a busy
            # neighbour one step of the wrong count can cost a hundred of the right one's
            others = [min(ts) for c, ts in self.probe.items() if c != threads and ts]
            best = min(others) if others else self.reference
            if best is not None and seconds > self.abandon * best:
                self.queue = [c for c in self.queue if c != threads]
            if not self.queue:
                self._decide()
            return
        self.recent.append(seconds)
        self.since_probe += 1
        # re-probe when the current count has lost more time than a probe costs (a neighbour
        # started), or after the interval, never more often than `spacing` allows
        slowed = (len(self.recent) >= 3 and self.reference is not None
                  and statistics.median(self.recent[-3:]) > self.slowdown * self.reference
                  and sum(t - self.reference for t in self.recent) > self.probe_cost)
        if slowed or self.since_probe >= max(self.interval, self.spacing):
            if slowed:
                self.interval = self.first_interval
            self._start_probe()

    @contextmanager
    def step(self) -> Iterator[None]:
        """One timed step: `before_step` on entry, `after_step` with its duration on a normal exit."""
        self.before_step()
        start = time.perf_counter()
        yield
        self.after_step(time.perf_counter() - start)

    def _decide(self) -> None:
        times = {c: min(ts) for c, ts in self.probe.items() if ts}
        best = min(times, key=times.get)
        if best == self.choice and self.reference is not None:
            self.interval = min(2 * self.interval, self.max_interval)
        else:
            self.interval = self.first_interval
        self.choice, self.reference = best, times[best]
        self.recent, self.since_probe = [], 0
        self.probe_cost = sum(t - times[best] for c, ts in self.probe.items() if c != best for t in ts)

    def summary(self) -> dict[int, int]:
        """Measured steps per thread count."""
        counts: dict[int, int] = {}
        for threads, _ in self.log:
            counts[threads] = counts.get(threads, 0) + 1
        return counts


def tuner_for(threads: int | str | None, device: torch.device) -> ThreadTuner | None:
    """The training loops' tuner: one when `threads` is "auto" on a CPU, else None.  Call it after
    `set_threads(threads)`: it starts at the count that chose (the cores free then)."""
    if threads != AUTO or device.type != "cpu":
        return None
    return ThreadTuner(first=torch.get_num_threads())


def timed_step(tuner: ThreadTuner | None):
    """`with timed_step(tuner):` around a training step; does nothing without a tuner."""
    return tuner.step() if tuner is not None else nullcontext()
