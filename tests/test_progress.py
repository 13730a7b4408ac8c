"""The progress line's time to go respects the time budget (--max_train_minutes)."""

import types

import pytest

from wtl_tf import callbacks


class _Iterations:
    def __init__(self):
        self.value = 0

    def numpy(self):
        return self.value


@pytest.mark.parametrize("budget_left, expected", [(None, "about 402 min to go"),
                                                   (58 * 60.0, "about 58 min to go (the time "
                                                                "budget)")])
def test_time_to_go_is_the_sooner_of_the_iteration_and_time_budgets(monkeypatch, budget_left,
                                                                    expected):
    clock = {"now": 0.0}
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: clock["now"])
    lines = []
    progress = callbacks.ProgressLog(
        10_000, every_seconds=60, log=lambda fmt, *args: lines.append(fmt % args),
        time_left=(lambda: budget_left) if budget_left else None)
    iterations = _Iterations()
    progress.set_model(types.SimpleNamespace(optimizer=types.SimpleNamespace(
        iterations=iterations)))
    progress.on_train_begin()
    for step in range(1, 1400):  # 2.8 s per meta-step after the first
        clock["now"] += 2.8
        iterations.value = step
        progress.on_train_batch_end(step, {"loss": 1.0})
    assert expected in lines[-1], lines[-1]
