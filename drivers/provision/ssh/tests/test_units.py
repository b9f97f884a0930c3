"""Pure logic: the wheelhouse, the agent's owner token and unit file, known_hosts lines, the
provides hook. No target needed."""

from __future__ import annotations

import importlib.util
import zipfile

import pytest

from dockyard.config import Config
from dockyard.errors import InvalidArgument
from dockyard.kernel import Kernel
from dockyard.specs.provision import EngineInstaller, HostRequest
from dockyard_provision_ssh import wheelhouse
from dockyard_provision_ssh.driver import known_hosts_line
from dockyard_provision_ssh.installer import SshEngineInstaller


def agent():
    spec = importlib.util.find_spec("dockyard_provision_ssh.remote.agent")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_agent_derives_the_engine_owner_token_as_the_engine_does(tmp_path) -> None:
    data = tmp_path / "r" / "web" / "data"
    assert agent().owner_token(str(data)) == Config(values={"data-root": str(data)}).owner


def test_the_systemd_unit_comes_from_the_kernel_s_supervisor_backend(tmp_path) -> None:
    """The engine's unit on a systemd target is the systemd backend's daemon unit, reached
    through the kernel (the installer the kernel provides holds its supervisors), never a copy:
    Type=notify, KillMode=process, the engine's log file."""
    from dockyard.specs.provision import EngineInstall, EngineTLS

    kernel = Kernel.build(Config(values={"data-root": str(tmp_path / "d"), "exec-root": str(tmp_path / "r")}),
                          environ={})
    installer = kernel.provided()[EngineInstaller]
    spec = EngineInstall(name="web", listen=("tcp://0.0.0.0:2376",), engine_url="tcp://10.0.0.2:2376",
                         tls=EngineTLS(b"", b"", b""), engine_flags=("--label", "a b"),
                         engine_env=(("HTTP_PROXY", "http://p:3128"),))
    (unit,) = installer.unit_files("/opt/dockyard/web", spec, "k")
    assert unit["path"] == "dockyard-web.service" == agent().unit_name("web")
    lines = unit["text"].splitlines()
    for line in ("Type=notify", "KillMode=process", "Restart=always",
                 'ExecStart=/opt/dockyard/.venvs/k/bin/dockyardd --config-file /opt/dockyard/web/daemon.json --label '
                 '"a b" -H tcp://0.0.0.0:2376 -H unix:///opt/dockyard/web/run/dockyard.sock --pidfile '
                 '/opt/dockyard/web/run/dockyardd.pid',
                 'Environment=HTTP_PROXY=http://p:3128', "WantedBy=multi-user.target",
                 "StandardOutput=append:/opt/dockyard/web/log/dockyardd.log"):
        assert line in lines, line
    bare = SshEngineInstaller(tmp_path / "w")
    with pytest.raises(Exception, match="no supervisor backends"):
        bare.unit_files("/opt/dockyard/web", spec, "k")


def test_the_wheelhouse_is_cached_by_content_and_installable(tmp_path) -> None:
    house, built = wheelhouse.build(tmp_path)
    assert built and house.pip_wheel.startswith("pip-")
    names = {w.split("-")[0] for w in house.wheels}
    assert {"dockyard_core", "dockyard_engine", "dockyard_api_docker", "aiohttp", "pip"} <= names
    again, built_again = wheelhouse.build(tmp_path)
    assert not built_again and again.key == house.key
    core = next(w for w in house.wheels if w.startswith("dockyard_core-"))
    with zipfile.ZipFile(house.path / core) as z:
        files = z.namelist()
        assert "dockyard/daemon.py" in files and not any("__pycache__" in f for f in files)
        info = next(f for f in files if f.endswith(".dist-info/entry_points.txt"))
        assert "dockyardd = dockyard.daemon:main" in z.read(info).decode()
        assert any(f.endswith(".dist-info/RECORD") for f in files)


def test_python_tags() -> None:
    assert wheelhouse.python_tags(["a-1-py3-none-any.whl"]) is None
    assert wheelhouse.python_tags(["a-1-py3-none-any.whl", "b-2-cp311-cp311-manylinux_2_17_x86_64.whl"]) == "3.11"


def test_known_hosts_lines_name_the_port_as_openssh_does() -> None:
    assert known_hosts_line("10.0.0.2", 22, "ssh-ed25519 AAAA c") == "10.0.0.2 ssh-ed25519 AAAA\n"
    assert known_hosts_line("10.0.0.2", 2222, "ssh-ed25519 AAAA") == "[10.0.0.2]:2222 ssh-ed25519 AAAA\n"


def test_the_installer_is_provided_to_every_driver(tmp_path) -> None:
    kernel = Kernel.build(Config(values={"data-root": str(tmp_path / "d"), "exec-root": str(tmp_path / "r"),
                                         "plugins": {"allow": ["ssh"]}}), environ={})
    installer = kernel.provided()[EngineInstaller]
    assert isinstance(installer, SshEngineInstaller)
    assert installer.cache_dir == tmp_path / "d" / "provision" / "ssh" / "wheelhouse"


@pytest.mark.parametrize(("options", "message"), [
    ({}, "needs ssh-address"),
    ({"ssh-address": "10.0.0.2", "colour": "blue"}, "no option"),
    ({"ssh-address": "10.0.0.2", "ssh-port": "99999"}, "not a port"),
    ({"ssh-address": "10.0.0.2", "install-root": "relative"}, "absolute"),
    ({"ssh-address": "10.0.0.2"}, "not pinned"),
])
async def test_prepare_refuses_bad_options(make_driver, tmp_path, options, message) -> None:
    key = tmp_path / "key"
    key.write_text("x")
    drv = make_driver()
    await drv.setup()
    with pytest.raises(InvalidArgument, match=message):
        await drv.prepare(HostRequest(name="h", options={"ssh-key": str(key), **options}))
