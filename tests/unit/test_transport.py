"""The local transport (football/transport.py): results as values, failures
that name host, command, exit code and the tail of stderr, timeouts, and
arguments that reach the program literally because no shell is involved."""

import shlex
import sys
import time
from pathlib import Path

import pytest

from football.transport import CommandFailed, CommandTimedOut, LocalTransport, Result, tail, \
    tool_path


@pytest.fixture
def transport():
    return LocalTransport("h1", {"MARS_HOST": "h1"})


# --- results ---------------------------------------------------------------------------

def test_a_successful_command_gives_a_result_with_its_output(transport):
    result = transport.run(["sh", "-c", "echo out; echo err >&2"])
    assert result == Result("h1", ("sh", "-c", "echo out; echo err >&2"), 0, "out\n", "err\n")
    assert result.ok


def test_the_results_command_is_the_argv_quoted_for_a_shell(transport):
    result = transport.run(["echo", "a b", "it's"])
    assert result.command == "echo 'a b' 'it'\"'\"'s'"
    assert shlex.split(result.command) == ["echo", "a b", "it's"]


def test_arguments_that_are_not_strings_are_passed_as_their_text(transport):
    result = transport.run(["echo", 42, Path("/x")])
    assert result.argv == ("echo", "42", "/x")
    assert result.stdout == "42 /x\n"


def test_without_check_a_failing_command_returns_its_result(transport):
    result = transport.run(["sh", "-c", "echo why >&2; exit 3"], check=False)
    assert (result.exit_code, result.stderr, result.ok) == (3, "why\n", False)


# --- failures --------------------------------------------------------------------------

def test_a_failing_command_raises_naming_host_command_exit_code_and_stderr(transport):
    argv = ["sh", "-c", "echo 'no space left' >&2; exit 3"]
    with pytest.raises(CommandFailed) as caught:
        transport.run(argv)
    assert str(caught.value) == f"h1: `{shlex.join(argv)}` exited 3:\nno space left"
    assert caught.value.result.exit_code == 3
    assert caught.value.result.host == "h1"


def test_a_failure_shows_only_the_first_and_last_lines_of_a_long_stderr(transport):
    script = "for i in $(seq 1 30); do echo line$i >&2; done; exit 1"
    with pytest.raises(CommandFailed) as caught:
        transport.run(["sh", "-c", script])
    message = str(caught.value)
    assert "line1\n...\nline23\n" in message
    assert message.endswith("line30")
    assert "line22" not in message


def test_a_failure_without_stderr_shows_stdout_and_without_output_says_so(transport):
    with pytest.raises(CommandFailed, match="exited 1:\nonly stdout$"):
        transport.run(["sh", "-c", "echo only stdout; exit 1"])
    with pytest.raises(CommandFailed, match=r"exited 1:\n\(no output\)$"):
        transport.run(["false"])


def test_a_command_over_its_time_limit_is_killed_and_raises_timed_out(transport):
    started = time.monotonic()
    with pytest.raises(CommandTimedOut) as caught:
        transport.run(["sleep", "5"], timeout=0.3)
    assert time.monotonic() - started < 3
    assert (caught.value.host, caught.value.argv, caught.value.timeout) == (
        "h1", ("sleep", "5"), 0.3)
    assert str(caught.value) == "h1: `sleep 5` did not finish within 0.3 s and was killed"


def test_a_command_that_does_not_exist_exits_127(transport):
    result = transport.run(["no-such-command-for-football"], check=False)
    assert result.exit_code == 127
    assert result.stderr == "no-such-command-for-football: command not found\n"


def test_a_command_that_does_not_exist_raises_command_failed_with_check(transport):
    with pytest.raises(CommandFailed, match="`no-such-command-for-football` exited 127:\n"
                                            "no-such-command-for-football: command not found"):
        transport.run(["no-such-command-for-football"])


# --- environment, arguments, stdin ----------------------------------------------------

def test_the_hosts_environment_is_visible_to_the_command(transport):
    assert transport.run(["sh", "-c", "echo $MARS_HOST"]).stdout == "h1\n"


def test_this_installations_scripts_come_first_on_the_path(transport):
    found = transport.run(["sh", "-c", "command -v football-host"]).stdout.strip()
    assert found == str(Path(sys.executable).parent / "football-host")
    assert tool_path().split(":")[0] == str(Path(sys.executable).parent)


@pytest.mark.parametrize("argument", [
    "a b", "it's", '"quoted"', "x; touch pwned", "$(touch pwned)", "`touch pwned`", "$HOME",
    "*", "a\nb", "", "-n"])
def test_an_argument_reaches_the_program_literally(transport, tmp_path, argument):
    result = transport.run([sys.executable, "-c", "import sys; print(repr(sys.argv[1]))",
                            argument])
    assert result.stdout == f"{argument!r}\n"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_input_is_passed_on_stdin(transport):
    assert transport.run(["cat"], input="hello\nworld\n").stdout == "hello\nworld\n"


def test_without_input_stdin_is_empty_so_a_reader_does_not_wait(transport):
    assert transport.run(["cat"], timeout=10).stdout == ""


# --- tail ------------------------------------------------------------------------------

def test_tail_keeps_a_short_text_whole():
    text = "\n".join(f"line{n}" for n in range(1, 10))
    assert tail(text) == text


def test_tail_keeps_the_first_line_and_the_last_lines_of_a_long_text():
    text = "\n".join(f"line{n}" for n in range(1, 21)) + "\n\n"
    assert tail(text) == "\n".join(["line1", "..."] + [f"line{n}" for n in range(13, 21)])


def test_tail_keeps_as_many_last_lines_as_asked():
    text = "\n".join(f"line{n}" for n in range(1, 21))
    assert tail(text, lines=2) == "line1\n...\nline19\nline20"


def test_tail_of_nothing_is_empty():
    assert tail("") == ""
    assert tail("\n\n") == ""
