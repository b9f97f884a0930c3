"""Docker Machine's driver flags (--ssh-address, --qemu-memory...) on ``machine create``."""

from __future__ import annotations

import click
import pytest

from dockyard_machine.cli import driver_flags


def test_driver_flags_become_driver_options() -> None:
    assert driver_flags("ssh", ["--ssh-address", "10.1.2.3", "--ssh-user=root", "h1", "--ssh-port", "2222"]) == (
        {"ssh-address": "10.1.2.3", "ssh-user": "root", "ssh-port": "2222"}, ["h1"])
    assert driver_flags("qemu", ["vm", "--qemu-memory", "2048", "--qemu-disk-size=20G"]) == (
        {"qemu-memory": "2048", "qemu-disk-size": "20G"}, ["vm"])
    assert driver_flags("netns", ["h1"]) == ({}, ["h1"])


@pytest.mark.parametrize(("args", "message"), [
    (["--qemu-memory", "1"], "driver flags of -d ssh start with --ssh-"),
    (["--stray"], "unknown flag '--stray'"),
    (["--ssh-address"], "needs a value"),
    (["--ssh-address", "--ssh-user", "root"], "needs a value"),
])
def test_other_extra_arguments_are_usage_errors(args: list[str], message: str) -> None:
    with pytest.raises(click.UsageError, match=message):
        driver_flags("ssh", args)
