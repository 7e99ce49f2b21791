"""A screener run file: which operation to run on which resource, one row
per job, and the filters and limits of `football screener run`.

The file is CSV with a header row, separated by `;` (the original
screener's) or `,` (whichever the header holds more of). Columns:

- `resource` (required): the job's resource, also the job's id;
- `operation` (or `command`): migrate, shrink, expand, handover,
  migrate+shrink, migrate+shrink+back. A `command` may hold a whole command
  line, `[football] <operation> <resource> <args...>`;
- the operation's arguments: from columns named like its parameters
  (`target`, `target_secondary`, `size`, `host`, `tmp_primary`; see
  PARAMETERS; `target` stands in for `host` and `tmp_primary`), then from an `args` column holding the rest of its command
  line (options such as `--two-phase` too);
- any others (`dst_cluster`, `customer`, ...): for filters and `--max-per`.

Everything is checked before anything is queued: the first problem is one
line naming the file, the line and what to do (`RunFileError`, exit 191)."""

import csv
import io
import re
import shlex
from dataclasses import dataclass, field

from football.errors import Illegal
from mars.errors import MarsError
from mars.names import check_resource

# operation -> its positional parameters after the resource, in order; the
# first `REQUIRED[operation]` of them must be given
PARAMETERS = {
    "migrate": ("target", "target_secondary"),
    "shrink": ("size",),
    "expand": ("size",),
    "handover": ("host",),
    "migrate+shrink": ("target", "target_secondary", "size"),
    "migrate+shrink+back": ("tmp_primary", "size"),
}
# a parameter's column when the row has none of its own name: one `target`
# column serves a file that mixes migrate, handover and migrate+shrink+back
FALLBACK = {"host": "target", "tmp_primary": "target"}
REQUIRED = {"migrate": 1, "shrink": 0, "expand": 1, "handover": 1, "migrate+shrink": 1,
            "migrate+shrink+back": 1}
ALIASES = {"extend": "expand"}
FILTER = re.compile(r"--([A-Za-z_][\w.-]*)(==|!=|=~)(.*)", re.DOTALL)


class RunFileError(Illegal):
    """The run file or its filters cannot be used; nothing was queued."""


@dataclass
class Job:
    """What one row asks for: `operation` on `resource` with `args` (the
    command line after the resource); `row` is every column of it."""
    resource: str
    operation: str
    args: list
    row: dict = field(default_factory=dict)
    line: int = 0

    @property
    def command(self):
        """The job's command line after `football`: operation, resource, args."""
        return [self.operation, self.resource, *self.args]


@dataclass(frozen=True)
class Filter:
    column: str
    op: str         # ==, != or =~
    value: str

    def matches(self, row):
        have = row.get(self.column, "")
        if self.op == "==":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        return re.search(self.value, have) is not None

    def __str__(self):
        return f"--{self.column}{self.op}{self.value}"


def parse_filters(words):
    """`--COLUMN==v`, `--COLUMN!=v`, `--COLUMN=~regex` as Filters, in order;
    `RunFileError` for anything else (an unknown option, a bad regex)."""
    filters = []
    for word in words:
        match = FILTER.fullmatch(word)
        if not match:
            raise RunFileError(f"{word!r} is not a filter: use --COLUMN==value, "
                               "--COLUMN!=value or --COLUMN=~regex; nothing was queued")
        column, op, value = match.groups()
        if op == "=~":
            try:
                re.compile(value)
            except re.error as error:
                raise RunFileError(f"filter {word}: bad regular expression: {error}; "
                                   "nothing was queued") from None
        filters.append(Filter(column, op, value))
    return filters


def parse_max_per(words):
    """`COLUMN=N` of `--max-per` as (column, N); None when not given.
    Only one column: a job is in one queue, partitioned by one key."""
    if not words:
        return None
    if len(words) > 1:
        raise RunFileError(f"--max-per given {len(words)} times ({', '.join(words)}); "
                           "a run limits per one column for now; nothing was queued")
    column, sep, number = words[0].partition("=")
    if not sep or not column or not number.isdigit() or int(number) < 1:
        raise RunFileError(f"--max-per {words[0]!r}: expected COLUMN=N with N >= 1 "
                           "(e.g. --max-per target=1); nothing was queued")
    return column, int(number)


GATE_VALUES = {"": False, "0": False, "no": False, "false": False, "off": False,
               "1": True, "yes": True, "true": True, "on": True}


def gated(job, name="run file"):
    """Whether the row's `gate` column asks for the operator gate before
    its downtime (yes/no, true/false, on/off, 1/0; empty or no column: no)."""
    value = job.row.get("gate", "").strip().lower()
    if value not in GATE_VALUES:
        raise RunFileError(f"{name} line {job.line}: gate {job.row['gate']!r} is not yes or "
                           "no: write yes or no (or true/false, on/off, 1/0; empty: no); "
                           "nothing was queued")
    return GATE_VALUES[value]


def read(path):
    """The rows of run file `path` as Jobs; `RunFileError` naming the line."""
    try:
        data = open(path, "rb").read()
    except OSError as error:
        raise RunFileError(f"run file {path}: {error.strerror}; nothing was queued") from None
    try:
        text = data.decode("utf-8-sig")      # a spreadsheet's export may begin with a BOM
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise RunFileError(f"run file {path} line {line}: not UTF-8 (byte "
                           f"0x{data[error.start]:02x}); save it as UTF-8 (a spreadsheet's "
                           "'CSV UTF-8'); nothing was queued") from None
    return parse(text, str(path))


def parse(text, name="run file"):
    lines = text.splitlines()
    header_line = next((line for line in lines if line.strip()), "")
    if not header_line:
        raise RunFileError(f"{name}: empty, expected a header row such as "
                           "resource;operation;target; nothing was queued")
    delimiter = ";" if header_line.count(";") >= header_line.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header, jobs, seen = None, [], {}
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        cells = [cell.strip() for cell in cells]
        if header is None:
            header = _header(cells, name)
            continue
        if len(cells) > len(header):
            raise RunFileError(f"{name} line {line}: {len(cells)} fields, the header has "
                               f"{len(header)}; nothing was queued")
        row = dict(zip(header, cells + [""] * (len(header) - len(cells))))
        job = _job(row, name, line)
        if job.resource in seen:
            raise RunFileError(f"{name} line {line}: {job.resource} already in line "
                               f"{seen[job.resource]}; one job per resource; nothing was queued")
        seen[job.resource] = line
        jobs.append(job)
    if header is None:
        raise RunFileError(f"{name}: no header row; nothing was queued")
    return header, jobs


def _header(cells, name):
    header = [cell.lower() for cell in cells]
    duplicates = sorted({cell for cell in header if header.count(cell) > 1})
    if duplicates:
        raise RunFileError(f"{name}: column {', '.join(duplicates)} twice in the header; "
                           "nothing was queued")
    if "resource" not in header:
        raise RunFileError(f"{name}: no 'resource' column in the header ({';'.join(cells)}); "
                           "nothing was queued")
    if "operation" not in header and "command" not in header:
        raise RunFileError(f"{name}: no 'operation' (or 'command') column in the header "
                           f"({';'.join(cells)}); nothing was queued")
    return header


def _job(row, name, line):
    where = f"{name} line {line}"
    resource = row["resource"]
    try:
        check_resource(resource)
    except MarsError as error:
        raise RunFileError(f"{where}: resource {resource!r}: {error}; nothing was queued") \
            from None
    extra = []
    if row.get("operation"):
        operation = row["operation"]
    else:
        try:
            words = shlex.split(row.get("command", ""))
        except ValueError as error:
            raise RunFileError(f"{where}: command: {error}; nothing was queued") from None
        if words[:1] == ["football"]:
            words = words[1:]
        if not words:
            raise RunFileError(f"{where}: no operation for {resource}; nothing was queued")
        operation, extra = words[0], words[1:]
        if extra[:1] == [resource]:
            extra = extra[1:]
        elif extra:
            raise RunFileError(f"{where}: command {row['command']!r} names another resource "
                               f"than {resource}; nothing was queued")
    operation = ALIASES.get(operation, operation)
    if operation not in PARAMETERS:
        raise RunFileError(f"{where}: unknown operation {operation!r}; known: "
                           f"{', '.join(PARAMETERS)}; nothing was queued")
    args = []
    names = PARAMETERS[operation]
    values = [row.get(parameter) or row.get(FALLBACK.get(parameter, ""), "")
              for parameter in names]
    given = [index for index, value in enumerate(values) if value]
    if given and given != list(range(len(given))):
        missing = names[next(index for index in range(len(names)) if not values[index])]
        raise RunFileError(f"{where}: {operation} {resource}: column {missing!r} is empty but "
                           "a later parameter is given; nothing was queued")
    args = [value for value in values if value]
    try:
        args += shlex.split(row.get("args", "")) + extra
    except ValueError as error:
        raise RunFileError(f"{where}: args: {error}; nothing was queued") from None
    positional = [arg for arg in args if not arg.startswith("-")]
    if len(positional) < REQUIRED[operation]:
        raise RunFileError(f"{where}: {operation} {resource} needs "
                           f"{' '.join(names[:REQUIRED[operation]])} (a column of that name "
                           "or the args column); nothing was queued")
    return Job(resource, operation, args, row, line)


def select(header, jobs, filters):
    """The jobs whose rows pass every filter; `RunFileError` for a filter on
    a column the file does not have."""
    for where in filters:
        if where.column.lower() not in header:
            raise RunFileError(f"filter {where}: no column {where.column!r} in the run file "
                               f"(columns: {', '.join(header)}); nothing was queued")
    lowered = [Filter(where.column.lower(), where.op, where.value) for where in filters]
    return [job for job in jobs if all(where.matches(job.row) for where in lowered)]
