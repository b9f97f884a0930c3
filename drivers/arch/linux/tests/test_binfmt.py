"""binfmt_misc handling without touching the host: register strings, entry parsing, the kernel's
magic/mask match, ownership (another's handler is kept and never removed) over a fake
``binfmt_misc`` directory; the CLI's ``status`` against the real one (read-only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard_arch_linux import binfmt as b


def fake_misc(tmp_path: Path, **entries: str) -> Path:
    misc = tmp_path / "binfmt_misc"
    misc.mkdir()
    (misc / "register").write_text("")
    (misc / "status").write_text("enabled\n")
    for name, text in entries.items():
        (misc / name).write_text(text)
    return misc


def entry_text(m: b.Machine, interpreter: str, flags: str = "F", enabled: bool = True) -> str:
    return (f"{'enabled' if enabled else 'disabled'}\ninterpreter {interpreter}\nflags: {flags}\noffset 0\n"
            f"magic {m.magic.hex()}\nmask {m.mask.hex()}\n")


def test_register_line_is_the_kernels_format() -> None:
    line = b.register_line(b.MACHINES["aarch64"])
    assert line.startswith(":dockyard-qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00")
    assert line.endswith(":/usr/bin/qemu-aarch64-static:F")
    assert "\\xb7\\x00:" in line  # e_machine 0xB7, little-endian


def test_an_entry_handles_its_machine_only() -> None:
    arm64, arm = b.MACHINES["aarch64"], b.MACHINES["arm"]
    e = b.parse_entry("qemu-aarch64", entry_text(arm64, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "POCF"))
    assert e.enabled and e.fixed and e.offset == 0 and not e.ours
    assert e.handles(arm64) and not e.handles(arm) and not e.handles(b.MACHINES["riscv64"])
    # a shared object (e_type 3) of arm64 is handled too: the mask's 0xfe keeps ET_EXEC|ET_DYN
    assert e.handles(b.Machine("x", "linux/arm64", arm64.magic[:16] + b"\x03\x00\xb7\x00", arm64.mask))


def test_someone_elses_handler_is_used_when_it_has_F(tmp_path: Path) -> None:
    arm64 = b.MACHINES["aarch64"]
    misc = fake_misc(tmp_path, **{"qemu-aarch64": entry_text(arm64, "/usr/bin/qemu-aarch64-static", "F")})
    rows = {st.machine: st for st in b.status(misc, host_machine="x86_64")}
    assert rows["aarch64"].usable is not None and rows["aarch64"].usable.name == "qemu-aarch64"
    assert rows["arm"].usable is None
    assert b.emulated_platforms(misc) == [("linux/arm64", "qemu-aarch64")]


def test_a_handler_without_F_is_reported_not_used(tmp_path: Path) -> None:
    arm64 = b.MACHINES["aarch64"]
    misc = fake_misc(tmp_path, **{"qemu-aarch64": entry_text(arm64, "/usr/bin/qemu-aarch64-static", "P")})
    st = next(s for s in b.status(misc, host_machine="x86_64") if s.machine == "aarch64")
    assert st.usable is None and "lacks the F flag" in st.why_not()


def test_install_keeps_anothers_handler_and_remove_never_touches_it(tmp_path: Path) -> None:
    if not Path(b.MACHINES["arm"].interpreter()).exists():
        pytest.skip("qemu-user-static is not installed")
    arm64 = b.MACHINES["aarch64"]
    misc = fake_misc(tmp_path, **{"qemu-aarch64": entry_text(arm64, "/x/qemu-aarch64", "F")})
    record = tmp_path / "binfmt.json"
    out = b.install(["aarch64", "arm"], misc=misc, record=record)
    assert out.made == ["dockyard-qemu-arm"]  # the fake register file got our arm line
    assert (misc / "register").read_text() == b.register_line(b.machine_of("arm"))
    assert any(k.startswith("qemu-aarch64: someone else's") for k in out.kept)
    assert set(json.loads(record.read_text())["entries"]) == {"dockyard-qemu-arm"}
    (misc / "dockyard-qemu-arm").write_text(entry_text(b.MACHINES["arm"], "/usr/bin/qemu-arm-static"))
    gone = b.remove(["qemu-aarch64", "arm"], misc=misc, record=record)
    assert gone.removed == ["dockyard-qemu-arm"] and gone.skipped[0].startswith("qemu-aarch64: not dockyard's")
    assert (misc / "dockyard-qemu-arm").read_text() == "-1"  # what the kernel is told
    assert not record.exists()


def test_the_native_machine_is_not_foreign() -> None:
    assert "x86_64" not in {m.name for m in b.foreign("x86_64")}
    assert {"aarch64", "arm"} <= {m.name for m in b.foreign("x86_64")}
    assert not {"aarch64", "arm"} & {m.name for m in b.foreign("aarch64")}


def test_status_cli_reads_the_host() -> None:
    proc = subprocess.run([str(Path(sys.executable).parent / "dockyard"), "system", "binfmt", "status", "--format",
                           "json"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0 and "no such command" in proc.stderr.lower():
        pytest.skip("the dockyard CLI of this venv has no system group")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert {"Mounted", "Enabled", "Machines"} <= set(rep)
