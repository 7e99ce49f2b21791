"""A recording stand-in for a host's transport: tests say which commands
they expect and what each prints; any other command fails the test.

    runner = FakeRunner("h1")
    runner.expect(["lvs", ...], stdout="  vm1;1073741824;...\\n")
    host = Host(name="h1", address="10.0.0.1", _runner=runner)
    ...
    assert runner.calls == [("lvs", ...)]
"""

from football.transport import CommandFailed, Result


class UnexpectedCommand(AssertionError):
    """The code under test ran a command the test did not expect."""


class FakeRunner:
    """Canned results per argv, given out in the order they were expected;
    every command run is recorded in `calls` (argv tuples), and with what
    it got on stdin in `inputs` ((argv, input) pairs)."""

    def __init__(self, host="h1"):
        self.host = host
        self.calls = []
        self.inputs = []
        self.pending = []

    def expect(self, argv, stdout="", stderr="", exit=0):
        """The next run of `argv` prints `stdout`/`stderr` and exits `exit`."""
        self.pending.append(Result(self.host, tuple(str(arg) for arg in argv), exit, stdout,
                                   stderr))
        return self

    def run(self, argv, *, check=True, timeout=None, input=None):
        argv = tuple(str(arg) for arg in argv)
        self.calls.append(argv)
        self.inputs.append((argv, input))
        for index, result in enumerate(self.pending):
            if result.argv == argv:
                del self.pending[index]
                break
        else:
            expected = "\n  ".join(" ".join(result.argv) for result in self.pending) or "nothing"
            raise UnexpectedCommand(f"unexpected command on {self.host}: {' '.join(argv)}\n"
                                    f"expected:\n  {expected}")
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def close(self):
        pass
