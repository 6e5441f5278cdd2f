import subprocess
import sys

from deploy_robust import progress


def test_quiet_mode_returns_the_items_untouched():
    items = [1, 2, 3]
    progress.set_quiet(True)
    try:
        assert not progress.enabled() and progress.progress(items, total=3) is items
        shown = progress.bar(10, "x")
        shown.update(3)
        shown.close()  # nothing printed, nothing raised
    finally:
        progress.set_quiet(False)


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_plain_lines_come_at_a_bounded_rate_with_an_eta():
    clock, lines = _Clock(), []
    shown = progress.Lines(100, "verify", clock=clock, write=lines.append)
    for step in range(100):
        clock.now = step * 1.0  # one unit a second: 100 s in all
        shown.update()
    shown.close()
    # the first line after 5 s, then one every 15 s, then the closing one
    assert len(lines) == 8  # at 5 s, then 20, 35, 50, 65, 80 and 95 s, and the closing line
    assert lines[0] == "verify: 6/100 (6%), 5 s, about 1 min 18 s left"
    assert lines[-1] == "verify: done in 1 min 39 s"
    assert all("left" in line for line in lines[:-1])


def test_a_step_shorter_than_the_first_line_prints_nothing():
    clock, lines = _Clock(), []
    shown = progress.Lines(10, "bench", clock=clock, write=lines.append)
    for step in range(10):
        clock.now = step * 0.4
        shown.update()
    shown.close()
    assert lines == []


def test_progress_reaches_a_pipe_as_plain_lines(tmp_path):
    code = (
        "import time; from deploy_robust import progress\n"
        "progress.FIRST_LINE_S = 0.0\n"
        "for _ in progress.progress(range(3), total=3, desc='calibration'): time.sleep(0.01)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stderr.splitlines()[0].startswith("calibration: 1/3 (33%)")
    assert run.stderr.splitlines()[-1].startswith("calibration: done in")


def test_a_long_unit_of_work_still_says_it_is_going():
    clock, lines = _Clock(), []
    shown = progress.Lines(4, "verify", clock=clock, write=lines.append)
    for second in range(0, 40):  # one unit that takes 40 s, its inner loop calling check_deadline
        clock.now = float(second)
        progress.check_deadline()
    shown.update()
    shown.close()
    assert lines[0].startswith("verify: 0/4 (0%), 5 s") and lines[0].endswith("(working on the next)")
    assert len([line for line in lines if "working on the next" in line]) == 3  # at 5, 20 and 35 s
    progress.check_deadline()  # closed: no more lines
    assert lines[-1] == "verify: done in 39 s"


def test_weighted_lines_show_a_share_and_what_runs_now():
    clock, lines = _Clock(), []
    shown = progress.Lines(400, "verify", clock=clock, write=lines.append, weighted=True)
    shown.doing("apgd-ce, batch 1/2")
    clock.now = 10.0
    shown.update(100)  # a quarter of the cost in 10 s: 30 s left
    assert lines == ["verify: 25%, 10 s, about 30 s left (apgd-ce, batch 1/2)"]


def test_no_eta_before_a_fiftieth_of_the_step_is_done():
    clock, lines = _Clock(), []
    shown = progress.Lines(1000, "verify", clock=clock, write=lines.append, weighted=True)
    clock.now = 5.0
    shown.update(5)  # half a percent in 5 s would say "about 16 min 35 s left"
    clock.now = 20.0
    shown.update(25)  # 3% in 20 s: an estimate worth printing
    assert lines == ["verify: 0%, 5 s", "verify: 3%, 20 s, about 10 min 47 s left"]


def test_work_credited_without_being_done_moves_the_share_but_not_the_eta():
    """A verification resumed at 77% from its checkpoint (and points an earlier attack already broke) are credited
    at once; the ETA extrapolates only the work done since."""
    clock, lines = _Clock(), []
    shown = progress.Lines(1000, "verify", clock=clock, write=lines.append, weighted=True)
    shown.update(770, free=True)
    clock.now = 10.0
    shown.update(20)  # 2% of the step worked in 10 s, 21% left: 105 s, where 790 units in 10 s would say 3 s
    assert lines == ["verify: 79%, 10 s, about 1 min 45 s left"]
