"""An engine option ``--config-file`` is merged into the host's daemon.json, never passed on
(a second --config-file would drop the host's cgroup-parent and let containers escape)."""

from __future__ import annotations

import json

import pytest

from dockyard.errors import InvalidArgument
from dockyard_provision_netns.driver import _merge_config_file


def test_config_file_flag_is_taken_out_and_read(tmp_path) -> None:
    f = tmp_path / "d.json"
    f.write_text(json.dumps({"network-opts": ["endpoint-ttl=2"], "arch-opts": ["x=1"]}))
    assert _merge_config_file(["-D", "--config-file", str(f), "--label", "a=b"]) == (
        ["-D", "--label", "a=b"], {"network-opts": ["endpoint-ttl=2"], "arch-opts": ["x=1"]})
    assert _merge_config_file([f"--config-file={f}"])[0] == []
    assert _merge_config_file(["-D"]) == (["-D"], {})


def test_a_bad_config_file_is_refused_by_name(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    with pytest.raises(InvalidArgument, match="bad.json"):
        _merge_config_file(["--config-file", str(bad)])
    with pytest.raises(InvalidArgument, match="missing.json"):
        _merge_config_file(["--config-file", str(tmp_path / "missing.json")])
