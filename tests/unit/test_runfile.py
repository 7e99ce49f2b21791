"""The screener's run file (football/runfile.py): the CSV, the operation's
arguments from columns or an `args` column, the filters and `--max-per`;
every problem is one RunFileError naming the file and the line."""

import pytest

from football import runfile
from football.runfile import RunFileError


def parse(text):
    return runfile.parse(text, "moves.csv")


def test_a_semicolon_file_gives_each_row_its_operation_and_arguments_from_columns():
    header, jobs = parse("resource;operation;target;target_secondary;customer\n"
                         "vm1;migrate;b1;b2;acme\n"
                         "vm2;handover;a2;;acme\n")
    assert header == ["resource", "operation", "target", "target_secondary", "customer"]
    assert jobs[0].command == ["migrate", "vm1", "b1", "b2"]
    assert jobs[1].command == ["handover", "vm2", "a2"]      # `target` serves as its host
    assert jobs[0].row["customer"] == "acme" and jobs[1].line == 3


def test_a_comma_file_takes_the_rest_of_the_command_line_from_an_args_column():
    _, jobs = parse('resource,operation,target,args\n'
                    'vm1,migrate,cluster2,"--two-phase --post-hand b2"\n'
                    'vm2,shrink,,20g\n'
                    'vm3,extend,,50\n')
    assert [job.command for job in jobs] == [
        ["migrate", "vm1", "cluster2", "--two-phase", "--post-hand", "b2"],
        ["shrink", "vm2", "20g"], ["expand", "vm3", "50"]]


def test_a_command_column_may_hold_the_whole_command_line():
    _, jobs = parse("resource;command\nvm1;football migrate vm1 b1 b2\nvm2;handover vm2 a2\n")
    assert [job.command for job in jobs] == [["migrate", "vm1", "b1", "b2"],
                                            ["handover", "vm2", "a2"]]


def test_a_spreadsheets_export_with_a_byte_order_mark_reads_as_without(tmp_path):
    path = tmp_path / "moves.csv"
    path.write_bytes("resource;operation;target\r\nvm1;migrate;b1\r\n".encode("utf-8-sig"))
    header, jobs = runfile.read(path)
    assert header == ["resource", "operation", "target"]
    assert jobs[0].command == ["migrate", "vm1", "b1"]


def test_a_file_not_in_utf8_is_one_error_naming_the_line(tmp_path):
    path = tmp_path / "moves.csv"
    path.write_bytes("resource;operation;target;customer\nvm1;migrate;b1;M\u00fcller\n"
                     .encode("latin-1"))
    with pytest.raises(RunFileError) as error:
        runfile.read(path)
    assert str(error.value) == (f"run file {path} line 2: not UTF-8 (byte 0xfc); save it as "
                                "UTF-8 (a spreadsheet's 'CSV UTF-8'); nothing was queued")

@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("operation;target\nmigrate;b1\n", "no 'resource' column"),
    ("resource;target\nvm1;b1\n", "no 'operation' (or 'command') column"),
    ("resource;operation;target\nvm1;migrat;b1\n", "line 2: unknown operation 'migrat'"),
    ("resource;operation;target\nvm1;migrate;b1\nvm1;migrate;b2\n",
     "line 3: vm1 already in line 2"),
    ("resource;operation;target\nvm/1;migrate;b1\n", "line 2: resource 'vm/1'"),
    ("resource;operation;target\nvm1;migrate;\n", "line 2: migrate vm1 needs target"),
    ("resource;operation;target;target_secondary\nvm1;migrate;;b2\n",
     "line 2: migrate vm1: column 'target' is empty but a later parameter is given"),
    ("resource;operation;target\nvm1;migrate;b1;b2\n", "line 2: 4 fields, the header has 3"),
    ("resource;command\nvm1;football migrate vm2 b1\n", "names another resource"),
    ("resource;operation;Resource\nvm1;migrate;x\n", "column resource twice"),
])
def test_a_bad_file_is_one_error_naming_the_line_and_nothing_is_queued(text, message):
    with pytest.raises(RunFileError) as error:
        parse(text)
    assert message in str(error.value)
    assert str(error.value).endswith("nothing was queued")
    assert error.value.exit_code == 191


def test_filters_select_rows_by_equality_inequality_and_regex_in_order():
    header, jobs = parse("resource;operation;target;customer\n"
                         "vm1;migrate;b1;acme\nvm2;migrate;b2;acme\nvm3;migrate;b1;other\n")
    select = lambda *words: [job.resource for job in runfile.select(  # noqa: E731
        header, jobs, runfile.parse_filters(words))]
    assert select("--target==b1") == ["vm1", "vm3"]
    assert select("--target!=b1") == ["vm2"]
    assert select("--customer=~^ac", "--target==b1") == ["vm1"]
    assert select("--Customer=~other") == ["vm3"]
    assert select() == ["vm1", "vm2", "vm3"]


@pytest.mark.parametrize("words, message", [
    (["--target=b1"], "is not a filter"),
    (["target==b1"], "is not a filter"),
    (["--target=~(b"], "bad regular expression"),
    (["--nosuch==x"], "no column 'nosuch'"),
])
def test_a_bad_filter_is_refused(words, message):
    header, jobs = parse("resource;operation;target\nvm1;migrate;b1\n")
    with pytest.raises(RunFileError) as error:
        runfile.select(header, jobs, runfile.parse_filters(words))
    assert message in str(error.value)


def test_max_per_is_one_column_and_a_number():
    assert runfile.parse_max_per(()) is None
    assert runfile.parse_max_per(["target=2"]) == ("target", 2)
    for bad in (["target"], ["target=0"], ["=2"], ["target=x"], ["target=1", "customer=1"]):
        with pytest.raises(RunFileError):
            runfile.parse_max_per(bad)
