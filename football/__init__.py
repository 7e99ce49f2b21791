"""Football: move LXC containers between hypervisors with local storage."""

__version__ = "0.1.0"
