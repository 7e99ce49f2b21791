"""Hooks and plugin loading (football/hooks.py): the shipped plugins are
registered and checked against the specs, a call nobody answers is a
`NoPlugin` naming host and hook, and an extra plugin can answer for its own
storage kind or take a hook over with `tryfirst`."""

import pluggy
import pytest

from football.errors import EXIT_ILLEGAL, NoPlugin
from football.hooks import BUILTIN_PLUGINS, SPECS, Hooks, StorageSpec, hookimpl, \
    plugin_manager
from football.inventory import Host


def zfs_host():
    return Host(name="z1", address="10.0.0.9", storage="zfs", vg="tank")


def filevg_host(tmp_path):
    return Host(name="h1", address="127.0.0.1", storage="filevg", vg="vg0", transport="local",
                root=str(tmp_path))


class ZfsStorage:
    """A third-party storage plugin for hosts with `storage: zfs`."""

    @hookimpl(tryfirst=True)
    def lv_path(self, host, lv):
        if host.storage == "zfs":
            return f"/dev/zvol/{host.vg}/{lv}"


class EveryPath:
    """A plugin that takes `lv_path` over for every host."""

    @hookimpl(tryfirst=True)
    def lv_path(self, host, lv):
        return f"/elsewhere/{lv}"


def test_the_plugin_manager_registers_every_shipped_plugin():
    manager = plugin_manager(entry_points=False)
    for name in BUILTIN_PLUGINS:
        assert manager.get_plugin(name) is not None, name


def test_every_hook_of_every_spec_is_known_to_the_manager():
    manager = plugin_manager(entry_points=False)
    hooks = {name for spec in SPECS for name in vars(spec) if not name.startswith("_")}
    assert hooks <= {name for name in vars(manager.hook) if not name.startswith("_")}
    assert "lv_create" in hooks and "resource_start" in hooks


def test_the_filevg_plugin_implements_every_storage_hook():
    manager = plugin_manager(entry_points=False)
    manager.check_pending()  # raises for an implementation without a spec
    implemented = {caller.name for caller in manager.get_hookcallers(
        manager.get_plugin("plugins.filevg"))}
    assert implemented == {name for name in vars(StorageSpec) if not name.startswith("_")}


def test_a_plugin_implementing_an_unknown_hook_is_refused_at_load_time():
    class Misspelled:
        @hookimpl
        def lv_craete(self, host, lv, size):
            return "/dev/x"

    with pytest.raises(pluggy.PluginValidationError, match="lv_craete"):
        plugin_manager(extra=[Misspelled()], entry_points=False)


def test_a_plugin_with_arguments_the_spec_does_not_have_is_refused_at_load_time():
    class WrongArguments:
        @hookimpl
        def lv_path(self, host, lv, colour):
            return "/dev/x"

    with pytest.raises(pluggy.PluginValidationError, match="colour"):
        plugin_manager(extra=[WrongArguments()], entry_points=False)


def test_a_hook_no_plugin_answers_raises_no_plugin_naming_the_host_and_the_hook():
    hooks = Hooks(plugin_manager(entry_points=False))
    with pytest.raises(NoPlugin) as caught:
        hooks.lv_path(host=zfs_host(), lv="vm1")
    message = str(caught.value)
    assert "no plugin implements lv_path for host z1" in message
    assert "storage zfs" in message
    assert "check the host's inventory entry or install the plugin" in message
    assert caught.value.exit_code == EXIT_ILLEGAL == 191


def test_no_plugin_is_raised_for_every_storage_hook_of_an_unknown_storage_kind():
    hooks = Hooks(plugin_manager(entry_points=False))
    with pytest.raises(NoPlugin, match="lv_create"):
        hooks.call("lv_create", host=zfs_host(), lv="vm1", size=1)
    with pytest.raises(NoPlugin, match="vg_free"):
        hooks.call("vg_free", host=zfs_host())


def test_an_extra_plugin_answers_for_its_own_storage_kind():
    hooks = Hooks(plugin_manager(extra=[ZfsStorage()], entry_points=False))
    assert hooks.lv_path(host=zfs_host(), lv="vm1") == "/dev/zvol/tank/vm1"


def test_an_extra_plugin_for_another_kind_leaves_the_shipped_plugin_answering(tmp_path):
    hooks = Hooks(plugin_manager(extra=[ZfsStorage()], entry_points=False))
    assert hooks.lv_path(host=filevg_host(tmp_path), lv="vm1") == f"{tmp_path}/dev/vg0/vm1"


def test_an_extra_tryfirst_plugin_wins_over_the_shipped_one(tmp_path):
    hooks = Hooks(plugin_manager(extra=[EveryPath()], entry_points=False))
    assert hooks.lv_path(host=filevg_host(tmp_path), lv="vm1") == "/elsewhere/vm1"


def test_resource_hooks_receive_the_hooks_object():
    seen = {}

    class Manager:
        @hookimpl(tryfirst=True)
        def resource_stop_vm(self, host, res, hooks):
            seen["hooks"] = hooks
            return True

    hooks = Hooks(plugin_manager(extra=[Manager()], entry_points=False))
    assert hooks.resource_stop_vm(host=zfs_host(), res="vm1") is True
    assert seen["hooks"] is hooks


def test_private_names_are_not_hooks():
    hooks = Hooks(plugin_manager(entry_points=False))
    with pytest.raises(AttributeError):
        hooks._not_a_hook
