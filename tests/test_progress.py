"""Progress off a terminal: plain lines on stderr, none for quick work, at most one per
period, and a final line once any was shown (a fake clock: no timing in tests)."""

from __future__ import annotations

import io

from rich.console import Console

from imcc.report.progress import PlainProgress, progress, without_progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def plain(clock: Clock) -> tuple[PlainProgress, io.StringIO]:
    buf = io.StringIO()
    return PlainProgress(Console(file=buf, width=200), first_after=10, every=10,
                         clock=clock), buf


def test_quick_work_prints_nothing() -> None:
    clock = Clock()
    p, buf = plain(clock)
    with p:
        task = p.add_task("simulating", total=500)
        for _ in range(5):
            clock.now += 1
            p.advance(task, 100)
    assert buf.getvalue() == ""


def test_long_work_prints_periodic_lines_and_the_end() -> None:
    clock = Clock()
    p, buf = plain(clock)
    with p:
        task = p.add_task("simulating", total=500)
        for _ in range(50):  # 50 s in steps of 1 s, 10 images each
            clock.now += 1
            p.advance(task, 10)
        p.update(task, description="sweep 128x128 m/2")
    lines = buf.getvalue().splitlines()
    assert lines == ["imcc: simulating 100/500 (10 s)", "imcc: simulating 200/500 (20 s)",
                     "imcc: simulating 300/500 (30 s)", "imcc: simulating 400/500 (40 s)",
                     "imcc: simulating 500/500 (50 s)", "imcc: sweep 128x128 m/2 done (50 s)"]
    assert "\x1b[" not in buf.getvalue()


def test_without_progress_drops_exactly_the_progress_lines() -> None:
    clock = Clock()
    p, buf = plain(clock)
    with p:
        task = p.add_task("passes", total=None)
        clock.now += 11
        p.advance(task, 1200)
    err = buf.getvalue() + "imcc: error: layer conv needs 10 arrays (use 10 or more)\n"
    assert len(err.splitlines()) == 3  # "passes 1,200 (11 s)" and "passes done (11 s)"
    assert without_progress(err) == ["imcc: error: layer conv needs 10 arrays (use 10 or more)"]
    assert without_progress("imcc: error: took too long (12 s)\n") == [
        "imcc: error: took too long (12 s)"]


def test_terminal_gets_a_rich_bar_and_a_pipe_plain_lines() -> None:
    assert isinstance(progress(Console(file=io.StringIO())), PlainProgress)
    tty = Console(file=io.StringIO(), force_terminal=True)
    assert not isinstance(progress(tty), PlainProgress)


def test_simulate_announces_its_image_count_before_the_first_batch(resnet20_float_auto
                                                                    ) -> None:
    """`imcc simulate`'s bar gets its total (the images after --skip / --limit) up front."""
    import imcc.api as api

    events: list[tuple[str, int]] = []
    api.simulate(resnet20_float_auto[0], skip=5, limit=7,
                 progress=lambda n: events.append(("done", n)),
                 total=lambda n: events.append(("total", n)))
    assert events[0] == ("total", 7)
    assert sum(n for kind, n in events if kind == "done") == 7
