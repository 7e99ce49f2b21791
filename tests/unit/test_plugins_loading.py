"""Plugin files of `plugin_dirs` (football/hooks.py) as operators lay them
out: a directory named twice or through a link, a file that ends Python at
import, a plugin written like the shipped ones (`new_plugin()`)."""

import os

import pytest

from football.hooks import Hooks, PluginLoadError, plugin_manager
from tests.unit.test_hooks import plugin_dir

NOTIFIER = """
    told = []

    @hookimpl
    def notify(job, state, text):
        told.append(state)
        return state
    """


def test_a_plugin_directory_named_twice_or_through_a_link_loads_each_file_once(tmp_path):
    """`plugin_dirs` naming one directory twice (`/etc/football/plugins.d`
    and `.../plugins.d/`) ended in a ValueError from pluggy; through a link
    (`plugins.d` → the package's directory) every hook of every file was
    called twice: each notification sent twice."""
    directory = plugin_dir(tmp_path, chat=NOTIFIER)
    os.symlink(directory, tmp_path / "linked.d")
    for dirs in ([str(directory), f"{directory}/"], [str(directory), str(tmp_path / "linked.d")]):
        hooks = Hooks(plugin_manager(entry_points=False, plugin_dirs=dirs))
        assert hooks.call("notify", job={"id": "vm1"}, state="done", text="x") == ["done"]


def test_a_plugin_file_that_exits_at_import_is_refused_naming_the_file(tmp_path):
    """`sys.exit(...)` at import (a script's check of what it needs) ended
    the command with the plugin's message alone, exit 1, not naming it."""
    directory = plugin_dir(tmp_path, needy="""
        import sys

        sys.exit("needs the chat client")
        """)
    with pytest.raises(PluginLoadError, match=rf"{directory / 'needy.py'} cannot be imported: "
                       "SystemExit: needs the chat client"):
        plugin_manager(entry_points=False, plugin_dirs=[str(directory)])


def test_a_plugin_file_offering_new_plugin_is_registered_as_its_object(tmp_path):
    """A plugin file written like the shipped ones (plugins/notify.py: a
    class, and `new_plugin()` making its object) was registered as the
    module, which implements nothing: its hooks were never called, and
    nothing said so."""
    directory = plugin_dir(tmp_path, chat="""
        class Chat:
            @hookimpl
            def notify(self, job, state, text):
                return f"chat: {text}"


        def new_plugin():
            return Chat()
        """)
    hooks = Hooks(plugin_manager(entry_points=False, plugin_dirs=[str(directory)]))
    assert hooks.call("notify", job={"id": "vm1"}, state="done", text="x") == ["chat: x"]


def installed_package(tmp_path, monkeypatch, module_text):
    """A package `site-chat` installed on the path whose entry point `chat`
    (group football.plugins) is the module `site_chat` of `module_text`."""
    info = tmp_path / "site_chat-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: site-chat\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[football.plugins]\nchat = site_chat\n")
    (tmp_path / "site_chat.py").write_text(module_text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "site_chat", raising=False)


@pytest.mark.parametrize("module_text, said", [
    ("import chat_client_not_installed\n",
     "cannot be loaded: ModuleNotFoundError: No module named 'chat_client_not_installed'"),
    ("from football.hooks import hookimpl\n\n\n@hookimpl\ndef notfy(job, state, text):\n"
     "    pass\n", "notfy"),
    ("from football.hooks import hookimpl\n\n\n@hookimpl\ndef notify(job, state, txt):\n"
     "    pass\n", "txt"),
])
def test_an_installed_plugin_that_cannot_be_loaded_is_refused_naming_it(
        tmp_path, monkeypatch, module_text, said):
    """A package's plugin (entry point) that fails to import, or implements
    an unknown hook or arguments its spec lacks, ended every command in a
    traceback (exit 1) that named neither the package nor the entry point."""
    installed_package(tmp_path, monkeypatch, module_text)
    with pytest.raises(PluginLoadError) as caught:
        plugin_manager()
    assert "plugin chat (site_chat) of the installed package site-chat" in str(caught.value)
    assert said in str(caught.value)
    assert caught.value.exit_code == 191
