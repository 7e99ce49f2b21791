"""Host names, resource names and sizes from the command line."""

import pytest

from mars.errors import MarsError
from mars.names import check_host, check_resource, parse_size

RESERVED_HOSTS = "none all any full empty undefined remote local localhost".split()


@pytest.mark.parametrize("name", ["h1", "a", "web-01", "db-prod-2", "a" + "b" * 62])
def test_valid_host_names_are_accepted(name):
    assert check_host(name) == name


@pytest.mark.parametrize("name", [
    "H1", "Web", "1h", "-h", "h_1", "h.example", "h 1", "", "a" + "b" * 63, "hé", None, 7])
def test_invalid_host_names_are_rejected_naming_the_input(name):
    with pytest.raises(MarsError, match="invalid host name") as caught:
        check_host(name)
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("name", RESERVED_HOSTS)
def test_reserved_host_names_are_rejected(name):
    with pytest.raises(MarsError, match=f"invalid host name '{name}': reserved word"):
        check_host(name)


@pytest.mark.parametrize("name", ["vm1", "VM_1", "_x", "1vm", "db.prod-2", "a" * 64])
def test_valid_resource_names_are_accepted(name):
    assert check_resource(name) == name


@pytest.mark.parametrize("name", [
    "vm1;rm -rf /", "a b", "$(x)", "../x", "a,b", "`id`", "a|b", "a&b", "a>b", "vm1'",
    'vm1"', "a/b", "a*", "", ".hidden", "-x", "a" * 65, "vm\t1", None])
def test_resource_names_with_shell_metacharacters_or_bad_shape_are_rejected(name):
    with pytest.raises(MarsError, match="invalid resource name") as caught:
        check_resource(name)
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("name", "all none any full empty undefined".split())
def test_reserved_resource_names_are_rejected(name):
    with pytest.raises(MarsError, match="reserved word"):
        check_resource(name)


# Regression: the patterns once ended in '$', which also matches before a
# trailing newline; 'vm1\n' became key 'resource-vm1\n/size', which peers reject.
@pytest.mark.parametrize("check, name", [
    (check_host, "h1\n"), (check_host, "\nh1"), (check_resource, "vm1\n"),
    (check_resource, "vm1\r\n")])
def test_names_with_a_trailing_or_leading_newline_are_rejected(check, name):
    with pytest.raises(MarsError, match="invalid (host|resource) name"):
        check(name)


@pytest.mark.parametrize("text, size", [
    ("1073741824", 1 << 30),
    ("1", 1),
    ("100b", 100),
    ("512k", 512 << 10),
    ("512K", 512 << 10),
    ("10m", 10 << 20),
    ("10M", 10 << 20),
    ("10g", 10 << 30),
    ("10G", 10 << 30),
    ("2t", 2 << 40),
    ("1p", 1 << 50),
    ("2GiB", 2 << 30),
    ("2gib", 2 << 30),
    ("2GB", 2 << 30),
    ("4KiB", 4 << 10),
    (" 10g ", 10 << 30),
])
def test_parse_size_uses_binary_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", [
    "", "0", "0k", "-1", "1.5g", "10x", "g", "10 g", "10gg", "1e9", "0x10", "10iB7", "ten"])
def test_invalid_sizes_are_rejected_with_a_message_naming_the_input(text):
    with pytest.raises(MarsError, match="invalid size") as caught:
        parse_size(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize("text", [None, 10])
def test_sizes_that_are_not_text_are_rejected(text):
    with pytest.raises(MarsError, match="invalid size"):
        parse_size(text)
