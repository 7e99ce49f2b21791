"""Hooks and plugin loading (football/hooks.py): the shipped plugins are
registered and checked against the specs, a call nobody answers is a
`NoPlugin` naming host and hook, and an extra plugin can answer for its own
storage kind or take a hook over with `tryfirst`. Every spec documents
itself; every implementation is called in pluggy's order; plugin files in
plugin directories are loaded and checked; defaults can be replaced; and
migrate asks the plugins before its downtime window."""

import json
import textwrap

import pluggy
import pytest
from click.testing import CliRunner

from football.cli import cli
from football.config import Config
from football.errors import EXIT_ILLEGAL, Illegal, NoPlugin
from football.hooks import BUILTIN_PLUGINS, SPECS, Hooks, PluginLoadError, StorageSpec, \
    hookimpl, plugin_manager
from football.inventory import Host
from football.report import Reporter
from tests.helpers.fakehost import FakeRunner


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


# --- the specifications -----------------------------------------------------------------

HOOKS_NAMED_IN_FOOTBALL_MD = (
    "get_hyper get_store get_vg get_mountpoint resource_start resource_stop resource_start_vm "
    "resource_stop_vm is_startable resource_check resource_locked check_host check_migrate "
    "check_handover prepare_hosts finish_hosts save_resource_state restore_resource_state "
    "want_downtime report_downtime tell_action football_start football_finished "
    "football_failed football_warning phase section start_wait poll_wait rewrite_args").split()


def spec_methods():
    return [(spec, name, function) for spec in SPECS for name, function in vars(spec).items()
            if not name.startswith("_")]


def test_every_hook_named_in_football_md_has_a_spec():
    specified = {name for _, name, _ in spec_methods()}
    assert set(HOOKS_NAMED_IN_FOOTBALL_MD) <= specified


def test_every_spec_says_when_it_is_called_and_what_its_return_means():
    manager = plugin_manager(entry_points=False)
    for spec, name, function in spec_methods():
        assert spec.__doc__ and spec.__doc__.strip(), spec.__name__
        doc = function.__doc__ or ""
        assert len(doc.split()) >= 8, f"{name}: no real docstring"
        first = getattr(manager.hook, name).spec.opts.get("firstresult")
        kind = "First result" if first else "All results"
        assert kind in doc or kind.lower() in doc or \
            (not first and ("Notification" in doc or "notifications" in (spec.__doc__ or ""))), \
            f"{name}: the docstring does not say it is *{kind}*"


# --- order and results ------------------------------------------------------------------

def ordered_plugin(label, **marks):
    class Plugin:
        @hookimpl(**marks)
        def check_host(self, host):
            return [label]

    Plugin.__name__ = f"Plugin{label}"
    return Plugin()


def test_every_implementation_is_called_tryfirst_first_then_the_last_registered_then_trylast():
    plugins = [ordered_plugin("last", trylast=True), ordered_plugin("plain-1"),
               ordered_plugin("first", tryfirst=True), ordered_plugin("plain-2")]
    hooks = Hooks(plugin_manager(extra=plugins, entry_points=False))
    assert hooks.call("check_host", host=zfs_host()) == \
        [["first"], ["plain-2"], ["plain-1"], ["last"]]
    assert hooks.problems("check_host", host=zfs_host()) == ["first", "plain-2", "plain-1",
                                                              "last"]


def test_a_first_result_hook_takes_the_first_answer_and_skips_plugins_that_pass():
    calls = []

    class Passes:
        @hookimpl(tryfirst=True)
        def get_vg(self, host):
            calls.append("passes")

    class Answers:
        @hookimpl
        def get_vg(self, host):
            calls.append("answers")
            return "fastvg"

    hooks = Hooks(plugin_manager(extra=[Answers(), Passes()], entry_points=False))
    assert hooks.get_vg(host=zfs_host()) == "fastvg"
    assert calls == ["passes", "answers"]


def test_the_defaults_answer_when_no_plugin_does(tmp_path):
    hooks = Hooks(plugin_manager(entry_points=False))
    host = filevg_host(tmp_path)
    assert hooks.get_vg(host=host) == "vg0"
    assert hooks.get_mountpoint(host=host, res="vm1") == f"{tmp_path}/var/lib/lxc/vm1"
    assert hooks.vetoes("is_startable", host=host, res="vm1") == []
    assert hooks.vetoes("want_downtime", res="vm1", source=host, target=host, again=False) == []
    assert not any(hooks.call("resource_locked", host=host, res="vm1"))


def test_a_plugin_replaces_the_default_of_a_first_result_hook(tmp_path):
    class Layout:
        @hookimpl
        def get_mountpoint(self, host, res):
            return f"/srv/containers/{res}"

    hooks = Hooks(plugin_manager(extra=[Layout()], entry_points=False))
    assert hooks.get_mountpoint(host=filevg_host(tmp_path), res="vm1") == "/srv/containers/vm1"


class SiteLayout:
    """A site whose volume groups are named after the host and whose
    containers live under /srv."""

    @hookimpl
    def get_vg(self, host):
        return f"vg-{host.name}"

    @hookimpl
    def get_mountpoint(self, host, res):
        return f"/srv/ct/{res}"


def layout_inventory():
    from football.inventory import Inventory
    hosts = {name: Host(name=name, address="10.0.0.1", storage="lvm", vg="vg0")
             for name in ("h1", "h2")}
    return Inventory(hosts=hosts, clusters={"c1": ["h1", "h2"]}, demo={})


def test_the_plugins_layout_is_what_storage_and_units_use_after_apply_host_layout():
    from plugins import systemd
    inv = layout_inventory()
    Hooks(plugin_manager(extra=[SiteLayout()], entry_points=False)).apply_host_layout(inv)
    h1 = inv.hosts["h1"]
    assert (h1.vg, inv.hosts["h2"].vg) == ("vg-h1", "vg-h2")
    assert h1.mountpoint("vm1") == "/srv/ct/vm1"
    runner = h1._runner = FakeRunner("h1")
    runner.expect(["lvcreate", "--yes", "-n", "vm1", "-L", "1073741824b", "vg-h1"])
    assert Hooks(plugin_manager(entry_points=False)).lv_create(
        host=h1, lv="vm1", size=1 << 30) == "/dev/vg-h1/vm1"
    assert not runner.pending
    assert systemd.resource_units(h1, "vm1").mount == "srv-ct-vm1.mount"


def test_without_layout_plugins_the_inventory_layout_stays():
    inv = layout_inventory()
    Hooks(plugin_manager(entry_points=False)).apply_host_layout(inv)
    h1 = inv.hosts["h1"]
    assert h1.vg == "vg0" and h1.mountpoint("vm1") == "/var/lib/lxc/vm1"


def test_a_layout_plugin_answering_no_volume_group_name_is_refused_naming_the_host():
    class Empty:
        @hookimpl(tryfirst=True)
        def get_vg(self, host):
            return 42

    inv = layout_inventory()
    with pytest.raises(NoPlugin, match="get_vg answered 42 for host h1"):
        Hooks(plugin_manager(extra=[Empty()], entry_points=False)).apply_host_layout(inv)


def test_migrate_refuses_a_resource_whose_storage_is_not_on_its_hypervisor(tmp_path):
    from football.ops.base import Context
    from football.ops.migrate import Migrate

    inv = layout_inventory()

    class RemoteStorage:
        @hookimpl
        def get_hyper(self, res, inventory):
            return inventory.hosts["h1"]

        @hookimpl
        def get_store(self, res, inventory):
            return inventory.hosts["h2"]

    config = Config(variables=[f"state_dir={tmp_path}"], environ={})
    ctx = Context(inventory=inv, config=config, reporter=Reporter(as_json=True),
                  hooks=Hooks(plugin_manager(extra=[RemoteStorage()], entry_points=False)))
    for host in inv.hosts.values():
        host._runner = FakeRunner(host.name)        # no command is expected
    with pytest.raises(Illegal, match="vm1: its storage is on h2, not on its hypervisor h1; "
                                      "Football moves only local storage"):
        Migrate(ctx, "vm1", "c1").discover()


def test_a_veto_of_any_plugin_counts_even_when_others_say_yes():
    class Yes:
        @hookimpl(tryfirst=True)
        def is_startable(self, host, res):
            return True

    class NoMemory:
        @hookimpl
        def is_startable(self, host, res):
            return (False, f"{host.name} has too little memory for {res}")

    class Plain:
        @hookimpl
        def is_startable(self, host, res):
            return False

    hooks = Hooks(plugin_manager(extra=[Yes(), NoMemory(), Plain()], entry_points=False))
    assert hooks.vetoes("is_startable", host=zfs_host(), res="vm1") == \
        ["a plugin's is_startable said no", "z1 has too little memory for vm1"]


def test_notification_hooks_nobody_implements_return_an_empty_list_instead_of_no_plugin():
    hooks = Hooks(plugin_manager(entry_points=False))
    assert hooks.football_warning(text="careful") == []
    assert hooks.tell_action(operation="migrate", res="vm1", action="join",
                             hosts=[zfs_host()]) == []
    assert hooks.phase(operation="migrate", res="vm1", name="prepare") == []
    assert hooks.football_failed(operation="migrate", res="vm1", error=Exception("x"),
                                 exit_code=198) == []
    assert hooks.first("rewrite_args", command="migrate", args={"res": "vm1"}) is None


# --- plugin directories -----------------------------------------------------------------

PLUGIN_HEAD = "from football.hooks import hookimpl\n\n\n"


def plugin_dir(tmp_path, **files):
    directory = tmp_path / "plugins.d"
    directory.mkdir(exist_ok=True)
    for name, body in files.items():
        (directory / f"{name}.py").write_text(PLUGIN_HEAD + textwrap.dedent(body))
    return directory


def test_every_plugin_file_of_a_plugin_directory_is_loaded_and_answers(tmp_path):
    directory = plugin_dir(tmp_path, fastvg="""
        @hookimpl
        def get_vg(host):
            return "fast"
        """, checks="""
        @hookimpl
        def check_host(host):
            return [f"{host.name} is in maintenance"]
        """, _helper="""
        raise RuntimeError("files starting with _ are not plugins")
        """)
    hooks = Hooks(plugin_manager(entry_points=False, plugin_dirs=[str(directory)]))
    assert hooks.get_vg(host=zfs_host()) == "fast"
    assert hooks.problems("check_host", host=zfs_host()) == ["z1 is in maintenance"]


def test_the_configured_plugin_dirs_are_loaded_and_told_the_configuration(tmp_path):
    directory = plugin_dir(tmp_path, remember="""
        seen = {}

        @hookimpl
        def configure(config):
            seen["limit_syncs"] = config.limit_syncs

        @hookimpl
        def want_downtime(res, source, target):
            return (False, f"limit_syncs is {seen['limit_syncs']}")
        """)
    config = Config(variables=[f"plugin_dirs={directory}", "limit_syncs=2"], environ={})
    hooks = Hooks(config=config)
    assert hooks.vetoes("want_downtime", res="vm1", source=None, target=None,
                        again=False) == \
        ["limit_syncs is 2"]


def test_the_plugin_dirs_come_colon_separated_from_the_environment(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    config = Config(environ={"FOOTBALL_PLUGIN_DIRS": f"{one}:{two}"})
    assert config.plugin_dirs == (str(one), str(two))


def refused_plugin_dir(tmp_path, **files):
    """(the plugin directory holding `files`, the `PluginLoadError` it raises)."""
    directory = plugin_dir(tmp_path, **files)
    with pytest.raises(PluginLoadError) as caught:
        plugin_manager(entry_points=False, plugin_dirs=[str(directory)])
    return directory, caught.value


def test_a_plugin_file_with_an_unknown_hook_is_refused_at_load_time_naming_the_file(tmp_path):
    directory, error = refused_plugin_dir(tmp_path, typo="""
        @hookimpl
        def want_downtme(res, source, target):
            return True
        """)
    assert str(directory / "typo.py") in str(error) and "want_downtme" in str(error)
    assert error.exit_code == EXIT_ILLEGAL


def test_a_plugin_file_with_arguments_its_spec_lacks_is_refused_naming_file_and_argument(
        tmp_path):
    directory, error = refused_plugin_dir(tmp_path, wrong="""
        @hookimpl
        def is_startable(host, res, colour):
            return True
        """)
    assert str(directory / "wrong.py") in str(error) and "colour" in str(error)


def test_a_plugin_file_that_cannot_be_imported_is_refused_naming_the_file(tmp_path):
    directory, error = refused_plugin_dir(tmp_path, broken="def half(:\n")
    assert f"{directory / 'broken.py'} cannot be imported: SyntaxError" in str(error)


def test_a_plugin_directory_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(PluginLoadError, match="plugin directory .*nowhere does not exist"):
        plugin_manager(entry_points=False, plugin_dirs=[str(tmp_path / "nowhere")])


def test_the_command_line_exits_191_naming_a_bad_plugin_file_before_any_host_is_asked(
        tmp_path):
    directory = plugin_dir(tmp_path, typo="""
        @hookimpl
        def football_strat(operation, res, args):
            pass
        """)
    inventory = tmp_path / "fleet.yml"
    inventory.write_text("hosts:\n  a1: {address: 10.0.0.11}\n  a2: {address: 10.0.0.12}\n")
    result = CliRunner().invoke(cli, ["--inventory", str(inventory), "--var",
                                      f"state_dir={tmp_path / 'state'}", "--var",
                                      f"plugin_dirs={directory}", "handover", "vm1", "a2"])
    assert result.exit_code == 191, result.output
    assert f"{directory / 'typo.py'}" in result.output and "football_strat" in result.output


# --- shipped plugins and the command line -----------------------------------------------

def test_the_downtime_plugin_appends_one_json_line_per_window_to_the_state_dir(tmp_path):
    hooks = Hooks(config=Config(variables=[f"state_dir={tmp_path}"], environ={}))
    source, target = zfs_host(), Host(name="z2", address="10.0.0.10")
    hooks.report_downtime(operation="migrate", res="vm1", source=source, host=target,
                          seconds=2.34567)
    hooks.report_downtime(operation="handover", res="vm1", source=target, host=source,
                          seconds=1)
    records = [json.loads(line) for line in (tmp_path / "downtime.log").read_text().splitlines()]
    assert [(r["operation"], r["source"], r["host"], r["downtime_seconds"]) for r in records] == \
        [("migrate", "z1", "z2", 2.346), ("handover", "z2", "z1", 1)]


def test_a_failing_warning_notifier_does_not_fail_the_warning(capsys):
    def broken(text):
        raise RuntimeError("mail server down")

    Reporter(as_json=True, on_warning=broken).warning("sync is slow")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines] == ["warning", "warning-hook-failed"]


def rewriting_cli(tmp_path, monkeypatch, body):
    """Run `football handover vm1 a2` with a plugin file `body`; the
    operation only records the arguments it was built with."""
    from football.ops import migrate

    built = {}

    def run(self, phases):
        built.update(res=self.res, target=self.target_name)
        return {"resource": self.res, "phases": {}}

    monkeypatch.setattr(migrate.Migrate, "run", run)
    directory = plugin_dir(tmp_path, rewrite=body)
    inventory = tmp_path / "fleet.yml"
    inventory.write_text("hosts:\n  a1: {address: 10.0.0.11}\n  a2: {address: 10.0.0.12}\n")
    result = CliRunner().invoke(cli, ["--inventory", str(inventory), "--var",
                                      f"state_dir={tmp_path / 'state'}", "--var",
                                      f"plugin_dirs={directory}", "handover", "vm1", "a2"])
    return result, built


def test_a_plugin_can_rewrite_the_arguments_of_a_command(tmp_path, monkeypatch):
    result, built = rewriting_cli(tmp_path, monkeypatch, """
        @hookimpl
        def rewrite_args(command, args):
            if command == "handover":
                return dict(args, host="a1")
        """)
    assert result.exit_code == 0, result.output
    assert built == {"res": "vm1", "target": "a1"}


def test_rewritten_arguments_with_other_keys_are_refused_with_191(tmp_path, monkeypatch):
    result, built = rewriting_cli(tmp_path, monkeypatch, """
        @hookimpl
        def rewrite_args(command, args):
            return {"resource": "vm2"}
        """)
    assert result.exit_code == 191 and "rewrite_args for handover" in result.output
    assert built == {}


# --- how migrate asks the plugins before its downtime window ----------------------------

class Recorder:
    """Says no to the downtime `noes` times, then yes; records the waits and
    the end of the run."""

    def __init__(self, noes=0, startable=True):
        self.noes, self.startable, self.calls = noes, startable, []

    @hookimpl
    def want_downtime(self, res, source, target):
        if self.noes:
            self.noes -= 1
            return (False, "the customer's backup runs")
        return True

    @hookimpl
    def is_startable(self, host, res):
        return True if self.startable else (False, f"{host.name} lacks the bridge br7")

    @hookimpl
    def start_wait(self, what, res):
        self.calls.append(("start_wait", what))

    @hookimpl
    def poll_wait(self, what, res, elapsed):
        self.calls.append(("poll_wait", what))

    @hookimpl
    def football_failed(self, operation, res, error, exit_code):
        self.calls.append(("football_failed", exit_code))
        raise RuntimeError("the notifier itself fails")


def migrate_with(tmp_path, plugin, *variables):
    from football.ops.base import Context
    from football.ops.migrate import Migrate

    config = Config(variables=[f"state_dir={tmp_path}", "poll_interval=0.01", *variables],
                    environ={})
    ctx = Context(inventory=None, config=config, reporter=Reporter(as_json=True),
                  hooks=Hooks(plugin_manager(extra=[plugin], entry_points=False)))
    op = Migrate(ctx, "vm1", "z2")
    op.source, op.targets = zfs_host(), [Host(name="z2", address="10.0.0.10")]
    return op


def test_migrate_waits_at_the_gate_until_every_plugin_wants_the_downtime(tmp_path):
    recorder = Recorder(noes=2)
    op = migrate_with(tmp_path, recorder)
    op._downtime_gate(op.source, op.targets[0])
    assert recorder.calls == [("start_wait", "downtime"), ("poll_wait", "downtime"),
                              ("poll_wait", "downtime")]


def test_migrate_refuses_with_191_when_the_gate_stays_closed_past_its_timeout(tmp_path):
    op = migrate_with(tmp_path, Recorder(noes=10 ** 6), "downtime_gate_timeout=0.05")
    with pytest.raises(Illegal, match="no downtime for vm1 within downtime_gate_timeout "
                                      "0.05 s: the customer's backup runs"):
        op._downtime_gate(op.source, op.targets[0])


def test_migrate_refuses_with_191_before_any_stop_when_a_plugin_vetoes_the_start(tmp_path):
    op = migrate_with(tmp_path, Recorder(startable=False))
    with pytest.raises(Illegal, match="z2: vm1 cannot start there: z2 lacks the bridge br7; "
                                      "nothing was stopped"):
        op._check_startable(op.targets[0], op.source)


def test_a_failed_migrate_tells_the_plugins_its_exit_code_and_raises_the_original_error(
        tmp_path, monkeypatch):
    recorder = Recorder()
    op = migrate_with(tmp_path, recorder)

    def discover():
        raise Illegal("unknown resource vm1")

    monkeypatch.setattr(op, "discover", discover)
    with pytest.raises(Illegal, match="unknown resource vm1"):
        op.run()
    assert recorder.calls == [("football_failed", 191)]
