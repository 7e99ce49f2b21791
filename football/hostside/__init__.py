"""Helpers Football runs on hosts through a transport (the `football-host` command)."""
