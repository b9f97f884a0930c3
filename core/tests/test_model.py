from __future__ import annotations

from dockyard.model import (
    Container,
    ContainerConfig,
    ContainerStatus,
    EndpointSettings,
    Health,
    Healthcheck,
    HealthLogEntry,
    HostConfig,
    Image,
    ImageConfig,
    PortBinding,
    RestartPolicy,
    from_dict,
    to_dict,
)


def test_nested_dataclasses_round_trip():
    c = Container(
        id="a" * 64, name="web", image_id="sha256:" + "b" * 64,
        config=ContainerConfig(image="busybox", cmd=["httpd"], healthcheck=Healthcheck(test=["CMD", "true"])),
        host_config=HostConfig(port_bindings={"80/tcp": [PortBinding("127.0.0.1", "8080")]},
                               restart_policy=RestartPolicy("on-failure", 3)),
        networks={"app": EndpointSettings(network_id="n", aliases=["web"])},
    )
    c.state.status = ContainerStatus.EXITED
    c.state.health = Health("unhealthy", 3, [HealthLogEntry("s", "e", 1, "boom")])
    again = from_dict(Container, to_dict(c))
    assert again == c
    assert isinstance(again.host_config.port_bindings["80/tcp"][0], PortBinding)
    assert isinstance(again.state.health.log[0], HealthLogEntry)


def test_unknown_keys_are_ignored_for_forward_compatibility():
    data = to_dict(Image(id="sha256:x", config=ImageConfig(cmd=["sh"])))
    data["future_field"] = 1
    assert from_dict(Image, data).config.cmd == ["sh"]


def test_a_container_written_by_0_1_keeps_its_state_machine():
    """0.1 kept the engine's bookkeeping in ``Container.extra``; it loads into typed fields."""
    c = Container(id="a" * 64, name="web", image_id="sha256:" + "b" * 64, config=ContainerConfig(image="busybox"),
                  host_config=HostConfig())
    old = to_dict(c)
    for key in ("start_count", "manually_stopped", "sandbox_key"):
        del old["state"][key]
    old["state"]["status"] = "running"
    old["extra"] = {"run": 3, "manual_stop": True, "netns": "/run/dockyard/netns/" + "a" * 64}
    again = from_dict(Container, old)
    assert again.state.start_count == 3 and again.state.manually_stopped
    assert again.state.sandbox_key == "/run/dockyard/netns/" + "a" * 64
    assert again.state.status is ContainerStatus.RUNNING
    assert "extra" not in to_dict(again)  # the next write stores the new shape
    assert from_dict(Container, to_dict(again)) == again
    old["extra"] = {}  # a container 0.1 never started
    assert from_dict(Container, old).state.start_count == 0
