"""``dockyard_build_record`` on a kernel: every plugin sees the builder's record with the image
(provenance keeps a signed attestation of it), and a plugin's refusal reaches the builder; the
kernel's event bus numbers events and hands them to the ``EventJournal`` provenance offers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dockyard.config import Config
from dockyard.errors import Forbidden
from dockyard.kernel import Kernel
from dockyard.model import Image
from dockyard.specs import hookimpl
from dockyard.specs.events import EventJournal
from dockyard_provenance import attest, lifecycle

RECORD = {"buildDefinition": {"externalParameters": {"tags": ["docker.io/library/app:1"]}},
          "runDetails": {"builder": {"id": "https://dockyard.dev/builder"}}}


class Spy:
    def __init__(self, refuse: bool = False) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.refuse = refuse

    @hookimpl
    def dockyard_build_record(self, kernel: Any, image: Image, record: dict[str, Any]) -> None:
        self.seen.append((image.id, record))
        if self.refuse:
            raise Forbidden(f"no builds of {image.id} here")


def _kernel(tmp_path: Path, *plugins: Any) -> Kernel:
    cfg = Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run")})
    return Kernel.build(cfg, plugins=(lifecycle, *plugins), autoload=False)


def test_build_record_reaches_every_plugin_and_is_attested(tmp_path: Path) -> None:
    spy = Spy()
    k = _kernel(tmp_path, spy)
    img = Image(id="sha256:" + "12" * 32)
    k.hook.dockyard_build_record(kernel=k, image=img, record=RECORD)
    assert spy.seen == [(img.id, RECORD)]
    (env,) = attest.local_attestations(k.config.data_root, img.id)
    key = attest.load_key(k.config.data_root / "provenance")
    stmt = attest.verify_envelope(env, key.public_key(), img.id)
    assert stmt["subject"][0]["name"] == "docker.io/library/app:1"


def test_a_refusal_reaches_the_builder(tmp_path: Path) -> None:
    k = _kernel(tmp_path, Spy(refuse=True))
    with pytest.raises(Forbidden, match="no builds"):
        k.hook.dockyard_build_record(kernel=k, image=Image(id="sha256:" + "34" * 32), record=RECORD)


def test_kernel_journals_events_with_sequence_numbers(tmp_path: Path) -> None:
    async def go() -> list[int]:
        k = _kernel(tmp_path)
        journal = k.provided()[EventJournal]
        k.events.attach(journal)
        seqs = [k.emit("container", "create", "c1").seq, k.emit("container", "start", "c1").seq]
        await k.events.durable()
        await journal.close()
        return seqs

    assert asyncio.run(go()) == [1, 2]
    assert asyncio.run(go()) == [3, 4]  # numbering continues after a restart
