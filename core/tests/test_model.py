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
