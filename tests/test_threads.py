"""CPU threads: the default count, --threads, and the governor that gives cores back to other processes."""

from pathlib import Path

import pytest
import torch

from asr_cli import threads
from asr_cli.errors import AsrCliError
from asr_cli.threads import ThreadGovernor, default_threads, physical_cores, use_threads
from tests.helpers import refused


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_default_is_the_physical_cores_shared_among_processes(monkeypatch):
    assert 1 <= physical_cores() <= len(threads.usable_cpus())
    monkeypatch.setattr(threads, "physical_cores", lambda: 8)
    assert default_threads() == 8 and default_threads(3) == 2 and default_threads(16) == 1
    assert use_threads(None, 4) == 2 and torch.get_num_threads() == 2
    with pytest.raises(AsrCliError, match="threads must be at least 1"):
        use_threads(0)


def test_the_governor_gives_cores_back_while_others_use_them_and_takes_them_again(monkeypatch):
    monkeypatch.setattr(threads, "physical_cores", lambda: 4)
    monkeypatch.setattr(threads, "_runnable_elsewhere", lambda: 0)
    clock = {"now": 0.0, "busy": 0.0, "own": 0.0}
    monkeypatch.setattr(threads, "_cpu_seconds", lambda: (clock["now"], clock["busy"], clock["own"]))
    governor = ThreadGovernor(None, check_interval_s=1.0, clock=lambda: clock["now"])
    assert governor.threads == 4

    def run_for(seconds: float, own_cores: float, other_cores: float) -> int:
        clock["now"] += seconds
        clock["own"] += own_cores * seconds
        clock["busy"] += (own_cores + other_cores) * seconds
        return governor.update()

    assert run_for(0.5, 4, 3) == 4  # not yet time to look
    assert run_for(1.0, 4, 3) == 1  # three cores busy elsewhere (over the 1.5 s since the last look)
    assert torch.get_num_threads() == 1
    assert run_for(2.0, 1, 1.8) == 2
    assert run_for(2.0, 2, 0.1) == 4  # free again
    fixed = ThreadGovernor(3)
    assert run_for(2.0, 1, 3) == 1 and fixed.update() == 3  # an explicit --threads stays


def test_a_busy_machine_starts_a_job_with_fewer_threads(monkeypatch):
    monkeypatch.setattr(threads, "physical_cores", lambda: 4)
    monkeypatch.setattr(threads, "_runnable_elsewhere", lambda: 3)
    assert ThreadGovernor(None).threads == 1
    assert ThreadGovernor(2).threads == 2


def test_threads_must_be_positive_on_every_command(tmp_path: Path):
    """Checked before any input is read: none of the inputs named here exists."""
    missing = tmp_path / "missing"
    for command in (
        ["prepare", missing / "all.jsonl", "-o", tmp_path / "store"],
        ["train", "--train", missing / "train.store", "--valid", missing / "dev.store", "-o", tmp_path / "exp"],
        ["decode", missing / "model.pt", missing / "dev.store", "-o", tmp_path / "hyp.jsonl"],
        ["transcribe", missing / "model.pt", missing / "speech.wav"],
    ):
        message = refused(*command, "--threads", "0", names="--threads")
        assert "not found" not in message
    assert (
        not (tmp_path / "store").exists() and not (tmp_path / "exp").exists() and not (tmp_path / "hyp.jsonl").exists()
    )
