from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.config import Config
from dockyard.errors import InvalidArgument
from dockyard.specs import ConfigOption


def test_file_then_flags(tmp_path: Path):
    f = tmp_path / "daemon.json"
    f.write_text('{"storage-driver": "vfs", "debug": true, "labels": ["a=1"]}')
    cfg = Config.load(str(f), {"storage-driver": "overlay", "data-root": None})
    cfg.validate()
    assert cfg.get("storage-driver") == "overlay"  # flags win
    assert cfg.get("debug") is True and cfg.get("labels") == ["a=1"]
    assert cfg.data_root == Path("/var/lib/dockyard")  # None flags fall back to defaults


def test_unknown_keys_and_wrong_types_are_named(tmp_path: Path):
    with pytest.raises(InvalidArgument, match="unknown configuration option.*storage-drvier"):
        Config(values={"storage-drvier": "vfs"}).validate()
    with pytest.raises(InvalidArgument, match="'hosts': expected list"):
        Config(values={"hosts": 3}).validate()
    Config(values={"x-feature": 1}).validate([ConfigOption("x-feature", int)])


def test_bad_json_says_where(tmp_path: Path):
    f = tmp_path / "daemon.json"
    f.write_text('{"debug": true,\n "labels": [}')
    with pytest.raises(InvalidArgument, match=r"invalid JSON at line 2"):
        Config.load(str(f))
    f.write_text("[1, 2]")
    with pytest.raises(InvalidArgument, match="expected a JSON object"):
        Config.load(str(f))


def test_owner_token_differs_per_data_root():
    a = Config(values={"data-root": "/var/lib/a"}).owner
    b = Config(values={"data-root": "/var/lib/b"}).owner
    assert a != b and a.startswith("dy") and len(a) == 8


def test_key_value_options():
    assert Config(values={"storage-opts": ["size=10G", "x = y"]}).options_for("storage-opts") == {
        "size": "10G", "x": "y"}
    with pytest.raises(InvalidArgument, match="not key=value"):
        Config(values={"storage-opts": ["oops"]}).options_for("storage-opts")


def test_effective_settings_include_defaults():
    cfg = Config(values={"debug": True})
    eff = cfg.effective([ConfigOption("mtu", int, 1500)])
    assert eff["debug"] is True and eff["live-restore"] is True and eff["mtu"] == 1500
    assert cfg.effective([ConfigOption("mtu", int, 1500)]) != Config(values={"mtu": 9000}).effective(
        [ConfigOption("mtu", int, 1500)])


def test_registry_flags_are_dockerds_and_repeatable(tmp_path: Path):
    from dockyard.daemon import config_from_args, parser

    f = tmp_path / "daemon.json"
    f.write_text('{"registry-mirrors": ["https://file.example"]}')
    args = parser().parse_args(["--config-file", str(f)])
    assert config_from_args(args).get("registry-mirrors") == ["https://file.example"]
    args = parser().parse_args(["--config-file", str(f), "--registry-mirror", "http://127.0.0.1:5000",
                                "--registry-mirror", "https://m.example/hub", "--insecure-registry", "10.0.0.0/8"])
    cfg = config_from_args(args)
    assert cfg.get("registry-mirrors") == ["http://127.0.0.1:5000", "https://m.example/hub"]  # flags win
    assert cfg.get("insecure-registries") == ["10.0.0.0/8"]


def test_a_whole_number_is_a_float_setting() -> None:
    cfg = Config(values={"timeout": 30})
    cfg.validate([ConfigOption("timeout", float, 1.5)])
    assert cfg.values["timeout"] == 30.0 and isinstance(cfg.values["timeout"], float)
    bad = Config(values={"timeout": True})
    with pytest.raises(InvalidArgument, match="expected float"):
        bad.validate([ConfigOption("timeout", float, 1.5)])
