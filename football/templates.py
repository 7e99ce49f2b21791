"""The jinja2 templates of `templates/`: systemd units, LXC configuration,
lab files. Undefined variables are errors, so a template and its caller
cannot silently drift apart."""

import os
from pathlib import Path

import jinja2

TEMPLATE_DIR = Path(os.environ.get("FOOTBALL_TEMPLATES")
                    or Path(__file__).resolve().parent.parent / "templates")

_environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                                  undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                  autoescape=False)


def render(template, **variables):
    """Render `template` (a path below templates/) with `variables`."""
    return _environment.get_template(template).render(**variables)
