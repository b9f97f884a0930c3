"""The machines service's logic over a fake provision driver (``conftest.FAKE_PROVISION``,
installed as its own distribution): records, states, transitions, events, clean-up of failed,
cancelled and interrupted creates, certificates. No engine runs: the fake does not declare the
capability ``engine``, so nothing is dialled over TLS (tests/test_machine_cli.py does that)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from dockyard.errors import Conflict, DriverNotInstalled, InvalidArgument, NotFound, NotModified, Unavailable
from dockyard.kernel import Kernel
from dockyard.model import Host
from dockyard.specs.provision import HostRequest
from dockyard_machine.listing import Filters
from dockyard_machine.options import EngineOptions, MachineCreate
from dockyard_machine.service import INTERRUPTED, MachineService


async def service(make_kernel: Callable[[], Kernel]) -> tuple[Kernel, MachineService]:
    kernel = make_kernel()
    svc = kernel.service("machines")
    assert isinstance(svc, MachineService)
    await svc.start()
    return kernel, svc


async def create(svc: MachineService, name: str, driver: str = "fake", **engine: Any) -> tuple[Host, list[str]]:
    creation = await svc.create(MachineCreate(name=name, driver=driver, engine=EngineOptions(**engine)))
    lines = []
    while (line := await creation.messages.get()) is not None:
        lines.append(line)
    return await creation.task, lines


def fake_hosts(kernel: Kernel, driver: str = "fake") -> dict[str, Any]:
    from acme_fake_provision import load

    return load(kernel.config.data_root / "provision" / driver)


def events(kernel: Kernel) -> list[tuple[str, str]]:
    return [(e.action, e.attributes.get("name", "")) for e in kernel.events.history if e.type == "machine"]


def hosts(kernel: Kernel) -> list[Host]:
    return kernel.open_store().list(Host)


# ---------------------------------------------------------------------------------- create
async def test_create_records_the_host_makes_certificates_and_passes_the_engine_options(make_kernel) -> None:
    kernel, svc = await service(make_kernel)
    host, lines = await create(svc, "h1", labels=["env=test"], env=["FOO=bar"], opts=["debug"],
                               storage_driver="vfs")
    assert host.state == "running" and host.driver == "fake" and host.addresses == ["192.0.2.2"]
    assert [h.name for h in hosts(kernel)] == ["h1"] and hosts(kernel)[0].id == host.id
    assert lines[0] == "Running pre-create checks..." and lines[-1] == "Docker is up and running!"
    assert any(line.startswith("Creating CA: ") for line in lines)
    rec = fake_hosts(kernel)[host.id]
    assert rec["flags"] == ["--label", "env=test", "--storage-driver", "vfs", "--debug"]
    assert rec["env"] == {"FOO": "bar"} and rec["labels"] == {"env": "test"}
    # the server certificate the engine got names the addresses the driver reported
    served = x509.load_pem_x509_certificate(rec["cert"].encode())
    sans = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["192.0.2.2"]
    files = svc.certs.host("h1")
    assert files.server_cert.read_text() == rec["cert"]
    assert json.loads((files.dir / "config.json").read_text())["HostOptions"]["EngineOptions"]["Labels"] == ["env=test"]
    assert events(kernel) == [("create", "h1")]
    # a second create (the CA exists now) does not make another
    _, lines = await create(svc, "h2")
    assert not any("Creating CA" in line for line in lines)


async def test_a_name_in_use_is_a_conflict_and_of_two_concurrent_creates_one_wins(make_kernel) -> None:
    kernel, svc = await service(make_kernel)
    results = await asyncio.gather(create(svc, "twin"), create(svc, "twin"), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "tuple"]
    conflict = next(r for r in results if isinstance(r, Conflict))
    assert str(conflict) == 'Docker machine "twin" already exists'
    with pytest.raises(Conflict):
        await create(svc, "twin")
    assert [h.name for h in hosts(kernel)] == ["twin"] and len(fake_hosts(kernel)) == 1


async def test_bad_requests_are_refused_before_anything_is_recorded(make_kernel) -> None:
    kernel, svc = await service(make_kernel)
    with pytest.raises(InvalidArgument, match="Invalid hostname"):
        await create(svc, "bad_name")
    with pytest.raises(InvalidArgument, match="invalid mirror: unsupported scheme"):
        await create(svc, "h1", registry_mirror=["ftp://m.example"])
    with pytest.raises(DriverNotInstalled, match="pip install dockyard-provision-nope"):
        await create(svc, "h1", driver="nope")
    assert hosts(kernel) == [] and not svc.certs.host("h1").dir.exists()


async def test_a_failed_create_leaves_nothing(make_kernel) -> None:
    kernel, svc = await service(make_kernel)
    with pytest.raises(Unavailable, match="did not come up"):
        await create(svc, "fail1")
    assert hosts(kernel) == [] and fake_hosts(kernel) == {}
    assert not svc.certs.host("fail1").dir.exists()
    assert events(kernel) == []
    await create(svc, "fail1x".replace("fail", "ok"))  # the service still works


async def test_rm_force_cancels_a_create_in_progress_and_it_cleans_up(make_kernel) -> None:
    kernel, svc = await service(make_kernel)
    creation = await svc.create(MachineCreate(name="slow1", driver="fake"))
    while (line := await creation.messages.get()) != "Waiting for machine to be running, this may take a few minutes...":
        assert line is not None
    assert [h.state for h in hosts(kernel)] == ["creating"]
    assert (await svc.observe(hosts(kernel)[0])).state == "Creating"
    with pytest.raises(Conflict, match="being created"):
        await svc.remove_machine("slow1")
    with pytest.raises(Conflict, match="being created"):
        await svc.start_machine("slow1")
    await svc.remove_machine("slow1", force=True)
    with pytest.raises(asyncio.CancelledError):
        await creation.task
    assert hosts(kernel) == [] and fake_hosts(kernel) == {} and not svc.certs.host("slow1").dir.exists()


async def test_stopping_the_service_cancels_creates_and_they_clean_up(make_kernel) -> None:
    kernel, svc = await service(make_kernel)
    creation = await svc.create(MachineCreate(name="slow2", driver="fake"))
    while (line := await creation.messages.get()) != "Copying certs to the remote machine...":
        assert line is not None
    await svc.stop()
    assert creation.task.cancelled()
    assert hosts(kernel) == [] and fake_hosts(kernel) == {}


async def test_a_create_the_daemon_died_in_is_removed_at_the_next_start(make_kernel) -> None:
    """What ``kill -9`` during a create leaves: the driver's prepared host, recorded as
    ``creating`` (a placeholder before prepare is recorded too)."""
    kernel = make_kernel()
    drv = await kernel.driver_ready("provision", "fake")
    prepared = await drv.prepare(HostRequest(name="h9"))
    store = kernel.open_store()
    with store.transaction() as tx:
        tx.put(dataclasses.replace(prepared, state="creating"))
        tx.put(Host(id="placeholder", name="h10", driver="fake", state="creating"))
    svc = kernel.service("machines")
    svc.certs.issue_host("h9", prepared.addresses)
    await svc.start()
    assert hosts(kernel) == [] and fake_hosts(kernel) == {} and not svc.certs.host("h9").dir.exists()
    assert [(a, n) for a, n in events(kernel)] == [("destroy", "h9"), ("destroy", "h10")]
    assert all(e.attributes["reason"] == INTERRUPTED for e in kernel.events.history)


async def test_an_interrupted_create_that_cannot_be_removed_stays_as_error_for_rm(make_kernel) -> None:
    kernel = make_kernel()
    drv = await kernel.driver_ready("provision", "fake")
    prepared = await drv.prepare(HostRequest(name="broken1"))
    with kernel.open_store().transaction() as tx:
        tx.put(dataclasses.replace(prepared, state="creating"))
    svc = kernel.service("machines")
    await svc.start()
    (host,) = hosts(kernel)
    assert host.state == "error" and INTERRUPTED in host.reason and "rm -f broken1" in host.reason
    observed = await svc.observe(host)
    assert observed.state == "Error"
    with pytest.raises(Unavailable, match="cannot be taken apart"):
        await svc.remove_machine("broken1")
    assert hosts(kernel)[0].state == "error"
    await svc.remove_machine("broken1", force=True)
    assert hosts(kernel) == []


async def test_an_interrupted_rm_is_finished_at_the_next_start(make_kernel) -> None:
    kernel, svc = await service(make_kernel)
    host, _ = await create(svc, "h1")
    svc._put(dataclasses.replace(host, state="removing"))  # noqa: SLF001 - what a killed rm leaves
    _, again = await service(make_kernel)
    assert hosts(kernel) == [] and fake_hosts(kernel) == {}
    assert not again.certs.host("h1").dir.exists()


# ---------------------------------------------------------------------------------- transitions
async def test_stop_start_restart_kill_and_their_events(make_kernel) -> None:
    kernel, svc = await service(make_kernel)
    host, _ = await create(svc, "h1")
    with pytest.raises(NotModified, match='Machine "h1" is already running.'):
        await svc.start_machine("h1")
    assert (await svc.stop_machine("h1")).state == "stopped"
    assert (await svc.observe(hosts(kernel)[0])).state == "Stopped"
    with pytest.raises(NotModified, match='Machine "h1" is already stopped.'):
        await svc.stop_machine("h1", action="kill")
    assert (await svc.start_machine("h1")).state == "running"
    assert (await svc.restart_machine("h1")).state == "running"
    await svc.stop_machine("h1", action="kill")
    await svc.restart_machine("h1")  # a stopped host is started
    assert fake_hosts(kernel)[host.id]["starts"] == 4
    assert events(kernel) == [("create", "h1"), ("stop", "h1"), ("start", "h1"), ("restart", "h1"),
                              ("kill", "h1"), ("restart", "h1")]
    with pytest.raises(NotFound, match='Host does not exist: "nope"'):
        await svc.start_machine("nope")


async def test_a_host_whose_engine_died_shows_error_with_the_reason_and_start_brings_it_back(make_kernel) -> None:
    from acme_fake_provision import crash

    kernel, svc = await service(make_kernel)
    await create(svc, "h1")
    crash(kernel.config.data_root / "provision" / "fake", "h1", "the engine was killed by SIGKILL; its log ends:\nboom")
    (observed,) = await svc.list()
    assert (observed.state, observed.url) == ("Error", "")
    assert observed.error.startswith("the engine was killed by SIGKILL")
    assert hosts(kernel)[0].state == "error" and "boom" in hosts(kernel)[0].reason
    assert events(kernel)[-1] == ("die", "h1")
    assert kernel.events.history[-1].attributes["reason"] == "the engine was killed by SIGKILL"
    await svc.list()
    assert events(kernel).count(("die", "h1")) == 1, "a dead host is reported once"
    doc = await svc.inspect("h1")
    assert doc["State"] == "Error" and "boom" in doc["Error"]
    await svc.start_machine("h1")
    (observed,) = await svc.list()
    assert observed.state == "Running" and observed.error == "" and observed.url == "tcp://192.0.2.2:2376"
    assert hosts(kernel)[0].reason == ""


async def test_a_failed_start_records_why(make_kernel) -> None:
    kernel, svc = await service(make_kernel)
    await create(svc, "nostart1")
    await svc.stop_machine("nostart1")
    with pytest.raises(Unavailable, match="exited with status 1"):
        await svc.start_machine("nostart1")
    (host,) = hosts(kernel)
    assert host.state == "stopped" and "exited with status 1" in host.reason


async def test_a_host_the_driver_lost_is_an_error_rm_removes(make_kernel) -> None:
    from acme_fake_provision import save

    kernel, svc = await service(make_kernel)
    await create(svc, "h1")
    save(kernel.config.data_root / "provision" / "fake", {})
    (observed,) = await svc.list()
    assert observed.state == "Error" and "has no such host" in observed.error
    await svc.remove_machine("h1")
    assert hosts(kernel) == []


async def test_rm_removes_the_host_its_files_and_record(make_kernel) -> None:
    kernel, svc = await service(make_kernel)
    await create(svc, "h1")
    await svc.remove_machine("h1")
    assert hosts(kernel) == [] and fake_hosts(kernel) == {} and not svc.certs.host("h1").dir.exists()
    assert events(kernel)[-1] == ("destroy", "h1")
    with pytest.raises(NotFound):
        await svc.remove_machine("h1")
    await create(svc, "h1")  # the name is free again


async def test_list_filters_and_order(make_kernel) -> None:
    kernel, svc = await service(make_kernel)
    for name, labels in (("h10", ["env=prod"]), ("h2", ["env=test"]), ("web", [])):
        await create(svc, name, labels=labels)
    await svc.stop_machine("web")
    assert [o.host.name for o in await svc.list()] == ["h2", "h10", "web"]

    async def names(*items: str) -> list[str]:
        return [o.host.name for o in await svc.list(Filters.parse_cli(items))]

    assert await names("state=stopped") == ["web"]
    assert await names("label=env=test") == ["h2"]
    assert await names("name=^h", "driver=fake") == ["h2", "h10"]
    assert await names("driver=other") == []


# ---------------------------------------------------------------------------------- certificates
async def test_regenerate_certs_installs_a_new_server_certificate_and_restarts_a_running_engine(make_kernel) -> None:
    kernel, svc = await service(make_kernel)
    host, _ = await create(svc, "h1")
    before = fake_hosts(kernel)[host.id]["cert"]
    ca_before = svc.certs.host("h1").ca.read_text()
    await svc.regenerate_certs("h1")
    rec = fake_hosts(kernel)[host.id]
    assert rec["cert"] != before and rec["cert"] == svc.certs.host("h1").server_cert.read_text()
    assert rec["starts"] == 2, "the running engine was restarted to present it"
    assert svc.certs.host("h1").ca.read_text() == ca_before, "the CA (and the clients' bundle) stays"
    await svc.stop_machine("h1")
    await svc.regenerate_certs("h1")
    assert fake_hosts(kernel)[host.id]["starts"] == 2, "a stopped engine is not started"
    assert events(kernel)[-1] == ("regenerate-certs", "h1")


async def test_regenerate_certs_needs_a_driver_that_rotates_them(make_kernel) -> None:
    kernel, svc = await service(make_kernel)
    await create(svc, "h1", driver="fake-plain")
    before = svc.certs.host("h1").server_cert.read_text()
    with pytest.raises(Unavailable, match="tls-rotation"):
        await svc.regenerate_certs("h1")
    assert svc.certs.host("h1").server_cert.read_text() == before


async def test_env_gives_the_client_bundle_of_a_running_machine(make_kernel) -> None:
    kernel, svc = await service(make_kernel)
    await create(svc, "h1")
    doc = await svc.env("h1")
    assert doc["URL"] == "tcp://192.0.2.2:2376" and doc["Addresses"] == ["192.0.2.2"]
    assert doc["CA"] == (svc.certs.certs_dir / "ca.pem").read_text()
    assert doc["Cert"].startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE KEY" in doc["Key"]
    await svc.stop_machine("h1")
    with pytest.raises(Conflict, match="h1 is not running. Please start it"):
        await svc.env("h1")


async def test_upgrade_restarts_the_engine(make_kernel) -> None:
    kernel, svc = await service(make_kernel)
    host, _ = await create(svc, "h1")
    assert await svc.upgrade_machine("h1") == {"PreviousVersion": "", "Version": ""}
    assert fake_hosts(kernel)[host.id]["starts"] == 2
    assert events(kernel)[-1] == ("upgrade", "h1")


async def test_inspect_is_docker_machines_document(make_kernel, tmp_path: Path) -> None:
    kernel, svc = await service(make_kernel)
    await create(svc, "h1", labels=["a=b"])
    doc = await svc.inspect("h1")
    assert doc["Name"] == "h1" and doc["DriverName"] == "fake" and doc["ConfigVersion"] == 3
    assert doc["Driver"]["IPAddress"] == "192.0.2.2" and doc["Driver"]["MachineName"] == "h1"
    assert doc["Driver"]["Fake"]  # the driver's record, Pascal-cased
    assert doc["HostOptions"]["EngineOptions"]["Labels"] == ["a=b"]
    assert doc["HostOptions"]["AuthOptions"]["ServerCertPath"] == str(svc.certs.host("h1").server_cert)
    assert (doc["State"], doc["Error"], doc["URL"]) == ("Running", "", "tcp://192.0.2.2:2376")
    assert svc.root == tmp_path / "data" / "machines"
