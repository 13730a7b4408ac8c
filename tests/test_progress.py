"""The progress line's time to go respects the time budget (--max_train_minutes)."""

import pytest

from wtl_tf import callbacks


class _Learner:
    """What the shared callbacks ask of a learner."""

    def __init__(self, unit="meta-iteration", step_name="meta-step"):
        self.value, self.progress_unit, self.step_name = 0, unit, step_name

    def iteration(self):
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
    iterations = _Learner()
    progress.set_model(iterations)
    progress.on_train_begin()
    for step in range(1, 1400):  # 2.8 s per meta-step after the first
        clock["now"] += 2.8
        iterations.value = step
        progress.on_train_batch_end(step, {"loss": 1.0})
    assert expected in lines[-1], lines[-1]


def test_a_continual_run_logs_its_first_progress_line_after_its_first_step(monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: clock["now"])
    lines = []
    progress = callbacks.ProgressLog(600, every_seconds=60, log=lambda fmt, *a: lines.append(
        fmt % a), where=lambda logs: f"task {(learner.value - 1) // 30 + 1}/20")
    learner = _Learner("stream step", "step")
    progress.set_model(learner)
    progress.on_train_begin()
    for step in range(1, 601):
        clock["now"] += 0.5 if step > 1 else 3.0  # the first step traces
        learner.value = step
        progress.on_train_batch_end(step - 1, {"loss": 1.0})
    assert lines[0] == ("stream step 1/600 (task 1/20): loss 1.0000; first step took "
                        "3.0 s (tracing included)")
    assert len(lines) == 5  # then one per 60 s of 0.5 s steps: at 121, 241, 361, 481
    assert lines[1].startswith("stream step 121/600 (task 5/20): loss 1.0000; 0.50 s per step;"
                               " about 4 min to go")
