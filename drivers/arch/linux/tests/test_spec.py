"""Unit tests of OCI spec generation (no root, no runtime)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument
from dockyard.model import (
    Container,
    ContainerConfig,
    DeviceMapping,
    HostConfig,
    Image,
    ImageConfig,
    Mount,
    Ulimit,
)
from dockyard.specs.arch import ExecRequest, RuntimeCreateRequest
from dockyard_arch_linux import seccomp
from dockyard_arch_linux.spec import (
    DEFAULT_CAPABILITIES,
    MASKED_PATHS,
    READONLY_PATHS,
    SpecOptions,
    build_spec,
    capabilities,
    cgroups_path,
    exec_process,
    merge_env,
    parse_security_opt,
    resources,
)
from dockyard_arch_linux.users import resolve_user

CID = "c" * 64
OPTS = SpecOptions(owner="dyunit", host_nofile_hard=20000, init_path="/usr/bin/catatonit")


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        "alice:x:1000:1000:Alice:/home/alice:/bin/sh\n"
        "# a comment\n"
        "broken line\n")
    (etc / "group").write_text(
        "root:x:0:\n"
        "daemon:x:1:\n"
        "alice:x:1000:\n"
        "audio:x:29:alice,bob\n"
        "video:x:44:bob,alice\n"
        "staff:x:50:\n")
    return tmp_path


def req(rootfs: Path, *, cmd=("echo", "hi"), entrypoint=(), env=(), user="", workdir="", image_cfg=None,
        mounts=(), netns=None, tty=False, hostname="", **host) -> RuntimeCreateRequest:
    cfg = ContainerConfig(cmd=list(cmd), entrypoint=list(entrypoint), env=list(env), user=user,
                          working_dir=workdir, tty=tty, hostname=hostname)
    container = Container(id=CID, name="web", image_id="sha256:1", config=cfg, host_config=HostConfig(**host))
    image = Image(id="sha256:1", config=image_cfg or ImageConfig())
    return RuntimeCreateRequest(container=container, image=image, rootfs=str(rootfs), mounts=list(mounts),
                                netns_path=netns)


def mount_of(spec: dict, dest: str) -> dict:
    found = [m for m in spec["mounts"] if m["destination"] == dest]
    assert len(found) == 1, f"{dest}: {found}"
    return found[0]


# ---------------------------------------------------------------- process
def test_args_are_entrypoint_then_cmd(rootfs):
    spec = build_spec(req(rootfs, entrypoint=["/bin/sh", "-c"], cmd=["echo hi"]), OPTS)
    assert spec["process"]["args"] == ["/bin/sh", "-c", "echo hi"]


def test_image_entrypoint_and_cmd_fill_in(rootfs):
    img = ImageConfig(entrypoint=["/entry"], cmd=["--flag"])
    assert build_spec(req(rootfs, cmd=(), image_cfg=img), OPTS)["process"]["args"] == ["/entry", "--flag"]
    # a container entrypoint drops the image's cmd (Docker's rule)
    spec = build_spec(req(rootfs, cmd=(), entrypoint=["/other"], image_cfg=img), OPTS)
    assert spec["process"]["args"] == ["/other"]


def test_no_command_is_invalid(rootfs):
    with pytest.raises(InvalidArgument):
        build_spec(req(rootfs, cmd=()), OPTS)


def test_env_merges_image_then_container(rootfs):
    img = ImageConfig(env=["PATH=/img/bin", "A=1", "B=2"])
    spec = build_spec(req(rootfs, env=["B=3", "C=4"], image_cfg=img, hostname="h1"), OPTS)
    env = spec["process"]["env"]
    assert "PATH=/img/bin" in env and "A=1" in env and "B=3" in env and "C=4" in env
    assert "B=2" not in env
    assert "HOSTNAME=h1" in env and "HOME=/root" in env
    assert [e for e in env if e.startswith("PATH=")] == ["PATH=/img/bin"]


def test_default_path_and_term(rootfs):
    env = build_spec(req(rootfs, tty=True), OPTS)["process"]["env"]
    assert any(e.startswith("PATH=/usr/local/sbin:") for e in env)
    assert "TERM=xterm" in env
    assert "TERM=xterm" not in build_spec(req(rootfs), OPTS)["process"]["env"]


def test_merge_env_keeps_order():
    assert merge_env(["A=1", "B=2"], ["A=9", "C=3"]) == ["A=9", "B=2", "C=3"]


def test_cwd_default_and_relative(rootfs):
    assert build_spec(req(rootfs), OPTS)["process"]["cwd"] == "/"
    assert build_spec(req(rootfs, image_cfg=ImageConfig(working_dir="/app")), OPTS)["process"]["cwd"] == "/app"
    assert build_spec(req(rootfs, workdir="/srv"), OPTS)["process"]["cwd"] == "/srv"
    with pytest.raises(InvalidArgument):
        build_spec(req(rootfs, workdir="rel"), OPTS)


def test_terminal_and_console_size(rootfs):
    spec = build_spec(req(rootfs, tty=True, console_size=[30, 100]), OPTS)
    assert spec["process"]["terminal"] is True
    assert spec["process"]["consoleSize"] == {"height": 30, "width": 100}
    assert "consoleSize" not in build_spec(req(rootfs, tty=True), OPTS)["process"]


def test_hostname_defaults_to_short_id(rootfs):
    assert build_spec(req(rootfs), OPTS)["hostname"] == CID[:12]
    assert build_spec(req(rootfs, hostname="web1"), OPTS)["hostname"] == "web1"


# ---------------------------------------------------------------- users
@pytest.mark.parametrize("user,uid,gid,extra,home", [
    ("", 0, 0, [], "/root"),
    ("root", 0, 0, [], "/root"),
    ("alice", 1000, 1000, [29, 44], "/home/alice"),
    ("1000", 1000, 1000, [29, 44], "/home/alice"),
    ("4242", 4242, 0, [], "/"),
    ("alice:staff", 1000, 50, [], "/home/alice"),
    ("alice:77", 1000, 77, [], "/home/alice"),
    ("4242:4243", 4242, 4243, [], "/"),
    ("daemon", 1, 1, [], "/usr/sbin"),
])
def test_user_resolution(rootfs, user, uid, gid, extra, home):
    u = resolve_user(user, str(rootfs))
    assert (u.uid, u.gid, u.additional_gids, u.home) == (uid, gid, extra, home)


def test_unknown_user_or_group_is_invalid(rootfs):
    with pytest.raises(InvalidArgument, match="no matching entries in passwd"):
        resolve_user("mallory", str(rootfs))
    with pytest.raises(InvalidArgument, match="group"):
        resolve_user("alice:nogroup", str(rootfs))


def test_extra_groups(rootfs):
    assert resolve_user("alice:alice", str(rootfs), ["staff", "99"]).additional_gids == [50, 99]


def test_passwd_symlink_out_of_rootfs_is_ignored(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").symlink_to("/etc/passwd")
    # the host's passwd must not be consulted: "root" resolves only through the numeric rule
    with pytest.raises(InvalidArgument):
        resolve_user("root", str(tmp_path))


def test_user_in_spec_with_groups(rootfs):
    spec = build_spec(req(rootfs, user="alice"), OPTS)
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [29, 44]}
    assert "HOME=/home/alice" in spec["process"]["env"]


def test_image_user_applies(rootfs):
    spec = build_spec(req(rootfs, image_cfg=ImageConfig(user="daemon")), OPTS)
    assert spec["process"]["user"] == {"uid": 1, "gid": 1}


# ---------------------------------------------------------------- capabilities and security
def test_default_capabilities(rootfs):
    caps = build_spec(req(rootfs), OPTS)["process"]["capabilities"]
    assert sorted(caps["bounding"]) == sorted(DEFAULT_CAPABILITIES)
    assert caps["bounding"] == caps["effective"] == caps["permitted"]
    assert "CAP_SYS_ADMIN" not in caps["bounding"] and "CAP_NET_ADMIN" not in caps["bounding"]


def test_cap_add_and_drop():
    caps = capabilities(HostConfig(cap_add=["net_admin", "CAP_SYS_TIME"], cap_drop=["MKNOD", "cap_kill"]))
    assert "CAP_NET_ADMIN" in caps and "CAP_SYS_TIME" in caps
    assert "CAP_MKNOD" not in caps and "CAP_KILL" not in caps
    assert "CAP_CHOWN" in caps


def test_cap_drop_all_keeps_only_adds():
    assert capabilities(HostConfig(cap_drop=["ALL"], cap_add=["NET_BIND_SERVICE"])) == ["CAP_NET_BIND_SERVICE"]
    assert capabilities(HostConfig(cap_drop=["all"])) == []


def test_cap_add_all_minus_drops():
    caps = capabilities(HostConfig(cap_add=["ALL"], cap_drop=["SYS_ADMIN"]))
    assert "CAP_SYS_ADMIN" not in caps and "CAP_SYS_MODULE" in caps and len(caps) == 40


def test_caps_limited_to_kernel():
    assert "CAP_CHECKPOINT_RESTORE" not in capabilities(HostConfig(privileged=True), cap_last_cap=39)
    assert len(capabilities(HostConfig(privileged=True), cap_last_cap=40)) == 41


def test_unknown_capability_is_invalid():
    with pytest.raises(InvalidArgument):
        capabilities(HostConfig(cap_add=["CAP_FLY"]))


def test_masked_readonly_paths_and_seccomp(rootfs):
    spec = build_spec(req(rootfs), OPTS)
    assert spec["linux"]["maskedPaths"] == list(MASKED_PATHS)
    assert spec["linux"]["readonlyPaths"] == list(READONLY_PATHS)
    prof = spec["linux"]["seccomp"]
    assert prof["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {n for rule in prof["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" and "args" not in rule
               for n in rule["names"]}
    assert {"read", "write", "execve", "exit_group"} <= allowed
    assert not {"mount", "unshare", "setns", "kexec_load", "bpf", "ptrace", "reboot"} & allowed
    clone = [r for r in prof["syscalls"] if r["names"] == ["clone"]]
    assert clone and clone[0]["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    assert {r["names"][0]: r for r in prof["syscalls"]}["clone3"]["errnoRet"] == 38


def test_seccomp_follows_capabilities():
    prof = seccomp.default_profile(["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"])
    allowed = {n for r in prof["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r
               for n in r["names"]}
    assert {"mount", "unshare", "setns", "ptrace", "clone", "clone3"} <= allowed
    assert "reboot" not in allowed


def test_privileged(rootfs):
    spec = build_spec(req(rootfs, privileged=True), OPTS)
    lin = spec["linux"]
    assert "seccomp" not in lin and "maskedPaths" not in lin and "readonlyPaths" not in lin
    assert "CAP_SYS_ADMIN" in spec["process"]["capabilities"]["bounding"]
    assert lin["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "ro" not in mount_of(spec, "/sys")["options"]


def test_security_opts(rootfs):
    spec = build_spec(req(rootfs, security_opt=["no-new-privileges", "seccomp=unconfined"]), OPTS)
    assert spec["process"]["noNewPrivileges"] is True
    assert "seccomp" not in spec["linux"]
    custom = {"defaultAction": "SCMP_ACT_ALLOW"}
    spec = build_spec(req(rootfs, security_opt=[f"seccomp={json.dumps(custom)}"]), OPTS)
    assert spec["linux"]["seccomp"] == custom
    assert build_spec(req(rootfs), OPTS)["process"]["noNewPrivileges"] is False


@pytest.mark.parametrize("bad", ["bogus", "foo=bar", "seccomp=/etc/profile.json", "seccomp={broken"])
def test_bad_security_opt(bad):
    with pytest.raises(InvalidArgument):
        parse_security_opt([bad])


def test_apparmor_label_accepted_but_ignored():
    assert parse_security_opt(["apparmor=unconfined", "label=disable"]).ignored == (
        "apparmor=unconfined", "label=disable")


def test_default_device_rules(rootfs):
    rules = build_spec(req(rootfs), OPTS)["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in rules


# ---------------------------------------------------------------- mounts
def test_default_mounts(rootfs):
    spec = build_spec(req(rootfs), OPTS)
    dests = [m["destination"] for m in spec["mounts"]]
    for d in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"):
        assert d in dests
    assert dests.index("/dev") < dests.index("/dev/pts")
    assert "ro" in mount_of(spec, "/sys")["options"]
    assert mount_of(spec, "/sys")["type"] == "sysfs"
    assert "size=67108864" in mount_of(spec, "/dev/shm")["options"]


def test_shm_size(rootfs):
    spec = build_spec(req(rootfs, shm_size=32 * 1024 * 1024), OPTS)
    assert "size=33554432" in mount_of(spec, "/dev/shm")["options"]


def test_user_mounts_bind_volume_tmpfs(rootfs):
    mounts = [Mount(type="bind", source="/srv/data", destination="/data", read_only=True),
              Mount(type="volume", source="/var/lib/v/x", destination="/data/sub", name="x"),
              Mount(type="tmpfs", destination="/run/t", options=["size=1m", "exec"])]
    spec = build_spec(req(rootfs, mounts=mounts, tmpfs={"/scratch": "size=2m,mode=1777"}), OPTS)
    data = mount_of(spec, "/data")
    assert data["type"] == "bind" and data["source"] == "/srv/data" and "ro" in data["options"]
    assert "rbind" in data["options"] and "rprivate" in data["options"]
    sub = mount_of(spec, "/data/sub")
    assert "rw" in sub["options"] and sub["source"] == "/var/lib/v/x"
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.index("/data") < dests.index("/data/sub")
    t = mount_of(spec, "/run/t")
    assert t["type"] == "tmpfs" and "size=1m" in t["options"] and "noexec" not in t["options"]
    s = mount_of(spec, "/scratch")
    assert "size=2m" in s["options"] and "mode=1777" in s["options"] and "noexec" in s["options"]


def test_user_mount_replaces_default(rootfs):
    spec = build_spec(req(rootfs, mounts=[Mount(type="bind", source="/x", destination="/dev/shm")]), OPTS)
    assert mount_of(spec, "/dev/shm")["source"] == "/x"


def test_duplicate_or_relative_mounts_invalid(rootfs):
    with pytest.raises(InvalidArgument):
        build_spec(req(rootfs, mounts=[Mount(type="bind", source="/a", destination="/d"),
                                       Mount(type="bind", source="/b", destination="/d/")]), OPTS)
    with pytest.raises(InvalidArgument):
        build_spec(req(rootfs, mounts=[Mount(type="bind", source="/a", destination="rel")]), OPTS)
    with pytest.raises(InvalidArgument):
        build_spec(req(rootfs, mounts=[Mount(type="npipe", source="/a", destination="/d")]), OPTS)


def test_etc_files(rootfs):
    r = req(rootfs)
    r.hosts_path, r.resolv_conf_path, r.hostname_path = "/h/hosts", "/h/resolv.conf", "/h/hostname"
    spec = build_spec(r, OPTS)
    assert mount_of(spec, "/etc/hosts")["source"] == "/h/hosts"
    assert mount_of(spec, "/etc/resolv.conf")["source"] == "/h/resolv.conf"
    assert mount_of(spec, "/etc/hostname")["type"] == "bind"
    assert not [m for m in build_spec(req(rootfs), OPTS)["mounts"] if m["destination"].startswith("/etc")]


def test_readonly_rootfs(rootfs):
    assert build_spec(req(rootfs, read_only_rootfs=True), OPTS)["root"] == {"path": str(rootfs), "readonly": True}
    assert build_spec(req(rootfs), OPTS)["root"]["readonly"] is False


# ---------------------------------------------------------------- namespaces
def test_namespaces_private(rootfs):
    ns = build_spec(req(rootfs), OPTS)["linux"]["namespaces"]
    assert {n["type"] for n in ns} == {"pid", "ipc", "uts", "mount", "network", "cgroup"}
    assert all("path" not in n for n in ns)


def test_namespaces_path_and_host(rootfs):
    ns = build_spec(req(rootfs, netns="/run/netns/x"), OPTS)["linux"]["namespaces"]
    assert {"type": "network", "path": "/run/netns/x"} in ns
    spec = build_spec(req(rootfs, netns="host"), OPTS)
    assert "network" not in {n["type"] for n in spec["linux"]["namespaces"]}
    assert mount_of(spec, "/sys")["type"] == "bind"


# ---------------------------------------------------------------- limits and resources
def test_nofile_default_is_clamped(rootfs):
    rl = build_spec(req(rootfs), OPTS)["process"]["rlimits"]
    assert rl == [{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}]


def test_ulimits(rootfs):
    rl = build_spec(req(rootfs, ulimits=[Ulimit("nofile", 100, 200), Ulimit("nproc", 50, 60)]), OPTS)
    by = {r["type"]: r for r in rl["process"]["rlimits"]}
    assert by["RLIMIT_NOFILE"] == {"type": "RLIMIT_NOFILE", "hard": 200, "soft": 100}
    assert by["RLIMIT_NPROC"]["soft"] == 50
    with pytest.raises(InvalidArgument):
        build_spec(req(rootfs, ulimits=[Ulimit("bogus", 1, 1)]), OPTS)
    with pytest.raises(InvalidArgument):
        build_spec(req(rootfs, ulimits=[Ulimit("nofile", 10, 5)]), OPTS)


def test_resources():
    mib = 1024 * 1024
    res = resources(HostConfig(memory=64 * mib, memory_reservation=32 * mib, nano_cpus=1_500_000_000,
                               cpu_shares=512, cpuset_cpus="0", cpuset_mems="0", pids_limit=50,
                               blkio_weight=300))
    assert res["memory"] == {"limit": 64 * mib, "swap": 128 * mib, "reservation": 32 * mib}
    assert res["cpu"] == {"shares": 512, "period": 100000, "quota": 150000, "cpus": "0", "mems": "0"}
    assert res["pids"] == {"limit": 50}
    assert res["blockIO"] == {"weight": 300}
    assert resources(HostConfig(memory=64 * mib, memory_swap=-1))["memory"]["swap"] == -1
    assert resources(HostConfig(memory=64 * mib, memory_swap=100 * mib))["memory"]["swap"] == 100 * mib
    assert "swap" not in resources(HostConfig(memory=64 * mib), swap_supported=False)["memory"]
    assert resources(HostConfig(cpu_quota=50000, cpu_period=100000))["cpu"] == {"quota": 50000, "period": 100000}
    assert resources(HostConfig(pids_limit=-1))["pids"] == {"limit": -1}
    assert resources(HostConfig()) == {}


@pytest.mark.parametrize("host", [
    HostConfig(memory=1024), HostConfig(memory=64 << 20, memory_swap=32 << 20),
    HostConfig(memory_swap=64 << 20), HostConfig(nano_cpus=10**9, cpu_quota=1000), HostConfig(blkio_weight=5),
])
def test_bad_resources(host):
    with pytest.raises(InvalidArgument):
        resources(host)


def test_cgroups_path_carries_owner(rootfs):
    spec = build_spec(req(rootfs), OPTS)
    assert spec["linux"]["cgroupsPath"] == f"/dockyard-dyunit-{CID}"
    assert cgroups_path("o", "x", "/parent/") == "/parent/dockyard-o-x"


def test_init(rootfs):
    spec = build_spec(req(rootfs, init=True), OPTS)
    assert spec["process"]["args"] == ["/dev/init", "--", "echo", "hi"]
    init = mount_of(spec, "/dev/init")
    assert init["source"] == "/usr/bin/catatonit" and "ro" in init["options"]
    with pytest.raises(InvalidArgument, match="catatonit"):
        build_spec(req(rootfs, init=True), SpecOptions(init_path=""))


def test_annotations(rootfs):
    spec = build_spec(req(rootfs, ), OPTS)
    assert spec["annotations"]["io.dockyard.owner"] == "dyunit"
    assert spec["annotations"]["io.dockyard.container.id"] == CID
    assert spec["ociVersion"].startswith("1.0")


# ---------------------------------------------------------------- exec
def test_exec_process(rootfs):
    base = build_spec(req(rootfs, env=["A=1"]), OPTS)["process"]
    proc = exec_process(base, ExecRequest(container_id=CID, exec_id="e", cmd=["ls"], env=["A=2", "B=3"],
                                          user="alice", working_dir="/tmp", tty=True), str(rootfs))
    assert proc["args"] == ["ls"] and proc["cwd"] == "/tmp" and proc["terminal"] is True
    assert proc["user"]["uid"] == 1000 and "HOME=/home/alice" in proc["env"]
    assert "A=2" in proc["env"] and "B=3" in proc["env"] and "A=1" not in proc["env"]
    assert "TERM=xterm" in proc["env"]
    assert base["args"] == ["echo", "hi"]  # the container's process is not modified
    priv = exec_process(base, ExecRequest(container_id=CID, exec_id="e", cmd=["ls"], privileged=True), str(rootfs))
    assert "CAP_SYS_ADMIN" in priv["capabilities"]["effective"]
    with pytest.raises(InvalidArgument):
        exec_process(base, ExecRequest(container_id=CID, exec_id="e", cmd=[]), str(rootfs))


def test_without_device_cgroup(rootfs):
    import dataclasses

    opts = dataclasses.replace(OPTS, device_cgroup=False)
    spec = build_spec(req(rootfs), opts)
    assert "devices" not in spec["linux"]["resources"]
    assert "CAP_MKNOD" not in spec["process"]["capabilities"]["bounding"]
    assert "CAP_MKNOD" in build_spec(req(rootfs, cap_add=["MKNOD"]), opts)["process"]["capabilities"]["bounding"]


# ---------------------------------------------------------------- issue 21: options applied
def test_host_namespaces_and_names(rootfs):
    spec = build_spec(req(rootfs, pid_mode="host", uts_mode="host", ipc_mode="host"), OPTS)
    kinds = [n["type"] for n in spec["linux"]["namespaces"]]
    assert "pid" not in kinds and "uts" not in kinds and "ipc" not in kinds and "mount" in kinds
    assert "hostname" not in spec  # the host's UTS namespace keeps the host's name
    assert mount_of(spec, "/dev/shm")["source"] == "/dev/shm"
    joined = req(rootfs, pid_mode="container:x")
    joined.namespaces = {"pid": "/proc/42/ns/pid"}
    assert {"type": "pid", "path": "/proc/42/ns/pid"} in build_spec(joined, OPTS)["linux"]["namespaces"]
    assert not [m for m in build_spec(req(rootfs, ipc_mode="none"), OPTS)["mounts"] if m["destination"] == "/dev/shm"]


def test_devices_sysctls_oom_score_and_groups(rootfs):
    spec = build_spec(req(rootfs, devices=[DeviceMapping("/dev/null", "/dev/n2", "rw")],
                          device_cgroup_rules=["c 42:* rmw"], sysctls={"net.ipv4.ip_forward": "1"},
                          oom_score_adj=300, group_add=["audio", "4242"]), OPTS)
    st = os.stat("/dev/null")  # owned by nobody inside a user namespace
    assert spec["linux"]["devices"] == [{"path": "/dev/n2", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666,
                                         "uid": st.st_uid, "gid": st.st_gid}]
    rules = spec["linux"]["resources"]["devices"]
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"} in rules
    assert {"allow": True, "type": "c", "major": 42, "access": "rmw"} in rules
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1"}
    assert spec["process"]["oomScoreAdj"] == 300
    assert spec["process"]["user"]["additionalGids"] == [29, 4242]
    with pytest.raises(InvalidArgument, match="not a device node"):
        build_spec(req(rootfs, devices=[DeviceMapping(str(rootfs / "etc" / "passwd"))]), OPTS)
    privileged = build_spec(req(rootfs, privileged=True), OPTS)
    assert {d["path"] for d in privileged["linux"]["devices"]} >= {"/dev/null", "/dev/zero"}


def test_proc_read_only_trees_keep_nosuid_nodev_noexec(rootfs):
    spec = build_spec(req(rootfs), OPTS)  # runc: its readonlyPaths keep /proc's flags
    assert "/proc/sys" in spec["linux"]["readonlyPaths"]
    spec = build_spec(req(rootfs), dataclasses.replace(OPTS, proc_readonly_binds=True))  # crun 1.8
    assert spec["linux"]["readonlyPaths"] == ["/proc/sysrq-trigger"]
    assert mount_of(spec, "/proc/sys")["options"] == ["rbind", "ro", "nosuid", "nodev", "noexec", "rprivate"]
    assert [m["destination"] for m in spec["mounts"][:2]] == ["/proc", "/proc/bus"]  # over the new /proc


def test_tmpfs_planned_by_the_engine_is_not_a_duplicate(rootfs):
    spec = build_spec(req(rootfs, tmpfs={"/x": "size=1m"}, read_only_rootfs=True,
                          mounts=[Mount(type="tmpfs", destination="/x", options=["size=1m"])]), OPTS)
    assert mount_of(spec, "/x")["type"] == "tmpfs" and spec["root"]["readonly"] is True


def test_extra_env_comes_before_the_containers_own(rootfs):
    r = req(rootfs, env=["A_NAME=mine"])
    r.extra_env = ["A_NAME=/web/a", "A_PORT=tcp://10.0.0.2:80"]
    env = build_spec(r, OPTS)["process"]["env"]
    assert "A_NAME=mine" in env and "A_PORT=tcp://10.0.0.2:80" in env and "A_NAME=/web/a" not in env


def test_systempaths_unconfined_unmasks_proc(rootfs):
    spec = build_spec(req(rootfs, security_opt=["systempaths=unconfined"]), OPTS)
    assert "maskedPaths" not in spec["linux"] and "readonlyPaths" not in spec["linux"]
    assert "seccomp" in spec["linux"]  # only the paths: seccomp stays
    with pytest.raises(InvalidArgument, match="systempaths takes only 'unconfined'"):
        build_spec(req(rootfs, security_opt=["systempaths=x"]), OPTS)
