"""The `football` command line: argument handling only, logic lives in the operations."""

import click

from football import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="football")
def cli():
    """Move LXC containers between hypervisor hosts whose data lives on local
    storage, replicated by MARS.

    Operations (migrate, shrink, expand, balance, evacuate, the lab) hang
    under this command as they are built; see README.md.
    """


def main():
    cli()
