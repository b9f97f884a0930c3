"""The image and volume front without a daemon: shapes, filters, progress text, CLI help, and
the JSON message stream rendering of ``dockyard image load``."""

from __future__ import annotations

import time

import click
import pytest
from click.testing import CliRunner

from dockyard.client.units import human_size
from dockyard.errors import InvalidArgument
from dockyard.model import Image, ImageConfig, Volume
from dockyard_api_docker.cli._stream import show_stream
from dockyard_api_docker.cli.image import image
from dockyard_api_docker.cli.volume import volume
from dockyard_api_docker.images import (
    _path_match,
    parse_until,
    progress_bar,
    reference_matches,
    summary,
)
from dockyard_api_docker.volumes import created_at, volume_json

ID = "sha256:" + "ab" * 32


def test_summary_shapes() -> None:
    img = Image(id=ID, repo_tags=["docker.io/library/busybox:latest", "127.0.0.1:5000/x/y:1"],
                created="2026-11-24T04:52:35.123456789Z", size=1984188,
                config=ImageConfig(labels={"a": "b"}))
    s = summary(img)
    assert s == {"Containers": -1, "Created": 1795495955, "Id": ID, "Labels": {"a": "b"}, "ParentId": "",
                 "RepoDigests": None, "RepoTags": ["127.0.0.1:5000/x/y:1", "busybox:latest"],  # dockerd's order
                 "SharedSize": -1, "Size": 1984188, "VirtualSize": 1984188}
    dangling = summary(Image(id=ID, created="2026-11-24T04:52:35Z"))
    assert dangling["RepoTags"] == ["<none>:<none>"] and dangling["RepoDigests"] == ["<none>@<none>"]
    assert dangling["Labels"] is None


def test_reference_filter_is_go_path_match() -> None:
    assert reference_matches("docker.io/library/busybox:latest", ["busybox"])
    assert reference_matches("docker.io/library/busybox:latest", ["busy*:lat*"])
    assert reference_matches("docker.io/cap/img:v1", ["cap/*"])
    assert not reference_matches("docker.io/cap/img:v1", ["*"])  # '*' does not cross '/'
    assert reference_matches("127.0.0.1:5000/dy/t:v1", ["127.0.0.1:5000/dy/*"])
    assert _path_match("a[bc]d", "acd") and not _path_match("a[!bc]d", "acd") and _path_match("a?", "ab")


def test_until_and_progress_text() -> None:
    now = 1_800_000_000.0
    assert parse_until("1700000000", now) == 1_700_000_000
    assert parse_until("1h30m", now) == now - 5400
    assert parse_until("2024-01-01T00:00:00Z", now) == 1_704_067_200
    with pytest.raises(InvalidArgument):
        parse_until("yesterday", now)
    assert human_size(2163712) == "2.164MB" and human_size(32768) == "32.77kB" and human_size(12) == "12B"
    bar = progress_bar(32768, 2163712)
    assert bar.startswith("[>") and bar.endswith("32.77kB/2.164MB") and len(bar.split("]")[0]) == 51
    assert progress_bar(10, 10).startswith("[" + "=" * 49 + ">]")


def test_volume_shape() -> None:
    vol = Volume(name="cap-vol", mountpoint="/d/volumes/cap-vol/_data", created="2026-11-24T04:52:13.5Z",
                 labels={"cap": "1"})
    assert volume_json(vol) == {"CreatedAt": "2026-11-24T04:52:13Z", "Driver": "local", "Labels": {"cap": "1"},
                                "Mountpoint": "/d/volumes/cap-vol/_data", "Name": "cap-vol", "Options": None,
                                "Scope": "local"}
    assert created_at("2026-11-24T04:52:13+00:00") == "2026-11-24T04:52:13Z"


def test_stream_rendering(capsys: pytest.CaptureFixture[str]) -> None:
    msgs = [{"status": "Loading layer", "progressDetail": {"current": 1, "total": 2}, "id": "abc"},
            {"status": "Loading layer", "progressDetail": {"current": 2, "total": 2}, "id": "abc"},
            {"stream": "Loaded image: busybox:latest\n"}]
    assert show_stream(iter(msgs), quiet=True) == ["Loaded image: busybox:latest"]
    assert "Loaded image: busybox:latest" in capsys.readouterr().out
    with pytest.raises(click.ClickException, match="layer digest mismatch"):
        show_stream(iter([{"error": "layer digest mismatch", "errorDetail": {"message": "x"}}]))


@pytest.mark.parametrize("group,sub", [(image, c) for c in image.commands] + [(volume, c) for c in volume.commands])
def test_every_command_answers_help(group: click.Group, sub: str) -> None:
    t = time.monotonic()
    res = CliRunner().invoke(group, [sub, "--help"])
    assert res.exit_code == 0 and "Usage:" in res.output
    assert time.monotonic() - t < 5
