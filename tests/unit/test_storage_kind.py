"""An inventory host's storage kind that no loaded plugin serves (a typo:
`storage: lvmm`) is refused when the plugins are loaded, before any
operation runs (football/storage.py, check_storage_kinds), naming the host,
the value and the known kinds — not when a storage hook is first called
for that host, which for a migrate's source was its cleanup, after the
downtime window."""

import pytest

from football.cli import Globals
from football.errors import EXIT_ILLEGAL, NoPlugin
from football.hooks import Hooks, hookimpl, plugin_manager
from football.inventory import load
from football.storage import check_storage_kinds

INVENTORY = """\
defaults: {{storage: {default}}}
hosts:
  a1: {{address: 10.0.0.1}}
  a2: {{address: 10.0.0.2, storage: {a2}}}
"""


@pytest.fixture
def inventory_file(tmp_path):
    def write(a2="lvm", default="lvm"):
        path = tmp_path / "fleet.yml"
        path.write_text(INVENTORY.format(a2=a2, default=default))
        return str(path)
    return write


def globals_of(path, tmp_path):
    return Globals(path, (), True, True, False, False, (f"state_dir={tmp_path}",), 0)


def test_a_misspelt_storage_kind_is_refused_before_the_operation_naming_host_value_and_kinds(
        inventory_file, tmp_path):
    path = inventory_file(a2="lvmm")
    with pytest.raises(NoPlugin) as caught:
        globals_of(path, tmp_path).context("migrate", "vm1")
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_ILLEGAL
    assert f"inventory {path}: host a2: storage 'lvmm' is a kind no storage plugin serves " \
           "(known: filevg, lvm)" in message
    assert "nothing was done" in message


def test_a_misspelt_storage_kind_in_the_defaults_names_the_first_host(inventory_file,
                                                                     tmp_path):
    path = inventory_file(default="filvg", a2="filevg")
    with pytest.raises(NoPlugin, match=r"host a1: storage 'filvg' .*\(known: filevg, lvm\)"):
        globals_of(path, tmp_path).context("status", "a1")


def test_the_shipped_storage_kinds_pass(inventory_file, tmp_path):
    context = globals_of(inventory_file(a2="filevg"), tmp_path).context("status", "a1")
    assert sorted(context.inventory.hosts) == ["a1", "a2"]


def test_a_kind_a_third_party_plugin_serves_passes_and_is_named_as_known(inventory_file):
    class Zfs:
        KIND = "zfs"

        @hookimpl(tryfirst=True)
        def lv_path(self, host, lv):
            if host.storage == "zfs":
                return f"/dev/zvol/{host.vg}/{lv}"

    hooks = Hooks(plugin_manager(extra=[Zfs()], entry_points=False))
    check_storage_kinds(load(inventory_file(a2="zfs")), hooks)
    with pytest.raises(NoPlugin, match=r"\(known: filevg, lvm, zfs\)"):
        check_storage_kinds(load(inventory_file(a2="zfz")), hooks)
