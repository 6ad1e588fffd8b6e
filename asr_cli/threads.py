"""CPU threads: how many each command computes with.

PyTorch's OpenMP threads spin a while when they wait for each other. Two
jobs that each use every core then keep descheduling each other's threads
mid-spin, and each runs many times slower than alone (measured on 2 cores:
a training 17x, a decode 5x; `scripts/bench_threads.py`). Making idle
threads sleep at once (`OMP_WAIT_POLICY=PASSIVE`) cures that but makes a
job alone 2.5x slower (the LSTM's many small operations pay a wake-up each),
so the default here is different: a long job (train, decode) starts with one
thread per physical core and, every few seconds, gives back the cores that
other processes are using (read from /proc/stat), down to one thread, and
takes them again when they are free. With one thread per job there is no
spinning to fight over. `--threads N` fixes the count instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from .config import ConfigError

CPU_TOPOLOGY = Path("/sys/devices/system/cpu")
MACHINE_CPU_TIMES = Path("/proc/stat")
CHECK_INTERVAL_S = 2.0
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # of /proc/stat's cpu line: user, nice, system, irq, softirq, steal


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on (its affinity mask, e.g. under taskset or a container)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def physical_cores() -> int:
    """Physical cores among the usable CPUs (Linux topology files), else the number of usable CPUs."""
    cpus = usable_cpus()
    cores = set()
    for cpu in cpus:
        topology = CPU_TOPOLOGY / f"cpu{cpu}" / "topology"
        try:
            cores.add(
                ((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip())
            )
        except OSError:
            return len(cpus)
    return max(1, len(cores))


def default_threads(processes: int = 1) -> int:
    """Threads per process when `processes` share the machine: the physical cores divided among them."""
    return max(1, physical_cores() // max(1, processes))


def use_threads(threads: int | None, processes: int = 1) -> int:
    """Set PyTorch's intra-op threads to `threads` (None: `default_threads(processes)`); returns the count."""
    import torch

    count = default_threads(processes) if threads is None else threads
    if count < 1:
        raise ConfigError("threads", f"{{0}} must be at least 1, not {count}")
    torch.set_num_threads(count)
    return count


def _process_cpu_seconds(pid: int | str) -> float:
    """User + system CPU ticks of one process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _descendants(pid: int) -> list[int]:
    """Live child processes of `pid`, their children, and so on (e.g. DataLoader workers)."""
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            with_children = [int(child) for child in children.read_text().split()]
            found += with_children
            stack += with_children
    return found


def _cpu_seconds() -> tuple[float, float, float] | None:
    """(monotonic time, CPU seconds the machine has been busy, CPU seconds of this process and its children),
    or None where /proc cannot tell (not Linux)."""
    try:
        machine = MACHINE_CPU_TIMES.read_text().split("\n", 1)[0].split()[1:]
        own = _process_cpu_seconds("self")
        for child in _descendants(os.getpid()):
            try:
                own += _process_cpu_seconds(child)
            except OSError:  # it ended meanwhile
                pass
    except (OSError, IndexError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    busy = sum(int(machine[field]) for field in BUSY_FIELDS if field < len(machine))
    return time.monotonic(), busy / ticks, own / ticks


def _runnable_elsewhere() -> int:
    """Threads of other processes runnable right now (/proc/loadavg's count less this process's own runnable
    threads; 0 where it cannot tell)."""
    try:
        runnable = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        own = sum(
            1 for stat in Path("/proc/self/task").glob("*/stat") if stat.read_text().rsplit(")", 1)[1].split()[0] == "R"
        )
    except (OSError, IndexError, ValueError):
        return 0
    return max(0, runnable - max(own, 1))


class ThreadGovernor:
    """Threads for a long job: fixed when asked for, else the cores other processes leave free (see above).

    Call `update()` often (each training step, each decoding batch); it looks at
    the machine only every `check_interval_s`.
    """

    def __init__(
        self,
        threads: int | None,
        processes: int = 1,
        check_interval_s: float = CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_threads = use_threads(threads, processes)
        self.adaptive = threads is None
        self.threads = self.max_threads
        if self.adaptive:  # a first guess from what is running now; measured CPU use corrects it later
            self._set(max(1, self.max_threads - _runnable_elsewhere()))
        self.check_interval_s = check_interval_s
        self._clock = clock
        self._last = _cpu_seconds() if self.adaptive else None

    def _set(self, threads: int) -> None:
        if threads != self.threads:
            import torch

            torch.set_num_threads(threads)
            self.threads = threads

    def update(self) -> int:
        """The thread count now, after adjusting it to what other processes use."""
        if self._last is None or self._clock() - self._last[0] < self.check_interval_s:
            return self.threads
        sample = _cpu_seconds()
        if sample is None:
            return self.threads
        elapsed = sample[0] - self._last[0]
        others_busy = ((sample[1] - self._last[1]) - (sample[2] - self._last[2])) / elapsed  # in cores
        self._last = sample
        self._set(max(1, min(self.max_threads, round(self.max_threads - others_busy))))
        return self.threads
