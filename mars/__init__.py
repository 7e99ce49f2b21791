"""Userspace MARS: block-level asynchronous replication with a marsadm-compatible CLI."""

__version__ = "0.1.0"
