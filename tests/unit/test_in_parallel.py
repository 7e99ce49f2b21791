"""`football.ops.base.in_parallel`: what the operations ask of many hosts at
once, in the items' order; failures and Ctrl-C only once every item ended,
and a second Ctrl-C at once."""

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from football.ops.base import PARALLEL_MOST, in_parallel


def test_results_come_in_the_items_order_whatever_order_the_items_end_in():
    """The first item ends last: it waits until every other one has ended."""
    items = list(range(PARALLEL_MOST))
    ended, lock, all_ended = [0], threading.Lock(), threading.Event()

    def item(number):
        if number == 0:
            assert all_ended.wait(timeout=30)
            return 0
        with lock:
            ended[0] += 1
            if ended[0] == len(items) - 1:
                all_ended.set()
        return number * 10
    assert in_parallel(item, items) == [number * 10 for number in items]


def test_at_most_parallel_most_items_run_at_once_and_all_run():
    running, most, lock = [0], [0], threading.Lock()

    def item(number):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        with lock:
            running[0] -= 1
        return number
    items = list(range(3 * PARALLEL_MOST + 1))
    assert in_parallel(item, items) == items
    assert 1 <= most[0] <= PARALLEL_MOST


def test_the_first_items_failure_is_raised_once_every_item_ended():
    ended = []

    def item(number):
        if number in (1, 3):
            raise ValueError(f"host {number} failed")
        ended.append(number)
        return number
    with pytest.raises(ValueError, match="host 1 failed"):
        in_parallel(item, range(5))
    assert sorted(ended) == [0, 2, 4], "raised before the other items ended"
    assert in_parallel(item, []) == []


CTRL_C = textwrap.dedent("""
    import linecache, os, signal, sys, threading, time
    from football.ops.base import in_parallel
    # (a suite started in the background by a shell inherits SIGINT
    # ignored, and Python then leaves it so)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = threading.Barrier(3)
    forever = threading.Event()

    def item(number):
        started.wait(timeout=30)
        forever.wait({hold})                # a host command that hangs
        return number

    def waiting(taken):
        # the main thread blocked in in_parallel's wait for the results, the
        # interrupts before this one taken
        frame = sys._current_frames()[threading.main_thread().ident]
        return "done.get(" in linecache.getline(frame.f_code.co_filename, frame.f_lineno) \
            and len(frame.f_locals.get("interrupts") or ()) == taken

    def interrupt():
        started.wait(timeout=30)
        for count in range({interrupts}):
            while not waiting(taken=count):
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=interrupt, daemon=True).start()
    begun = time.monotonic()
    try:
        in_parallel(item, [1, 2])
    except KeyboardInterrupt:
        print(f"interrupted after {{time.monotonic() - begun:.1f}} s", flush=True)
        sys.exit(130)
""")


def run_interrupted(interrupts, hold):
    """The script's result and the seconds until its process ended."""
    begun = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CTRL_C.format(interrupts=interrupts, hold=hold)],
                          capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - begun


def test_a_ctrl_c_is_raised_once_the_items_ended():
    """One Ctrl-C (as a screener job gets when its worker dies): the items
    in flight end first, then the interrupt; the process exits."""
    done, _ = run_interrupted(interrupts=1, hold=2)
    assert done.returncode == 130, (done.stdout, done.stderr)
    seconds = float(done.stdout.split()[2])
    assert seconds >= 1.5, f"raised before the items ended: {done.stdout}"


def test_a_second_ctrl_c_ends_the_run_at_once_while_the_items_hang():
    """Items that hang (60 s here) do not hold the process at its exit once
    a second Ctrl-C came: with a thread pool, its exit joined them."""
    done, seconds = run_interrupted(interrupts=2, hold=60)
    assert done.returncode == 130, (done.stdout, done.stderr)
    assert seconds < 30, f"the process ended {seconds:.0f} s after its start, its items' 60 s"
