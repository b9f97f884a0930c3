"""Docker Machine's output, byte for byte: ``env`` per shell, ``ls``'s table (Go's tabwriter),
Go templates, filters, states and order. Pure functions, no daemon."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidArgument
from dockyard_machine import shell
from dockyard_machine.formatting import parse, parse_format, render_items, tabwrite
from dockyard_machine.listing import Filters, display_state, first_line, go_duration, natural_key
from dockyard_machine.options import EngineOptions, MachineCreate, check_name

ARGV = ["dockyard", "machine", "env", "h1"]
VALUES = shell.EnvValues(host="tcp://10.247.0.2:2376", cert_path="/home/u/.dockyard/machine/machines/h1", machine="h1")


# ---------------------------------------------------------------------------------- env
def test_env_for_bash_is_docker_machines_output() -> None:
    assert shell.render("bash", VALUES, ARGV) == (
        'export DOCKER_TLS_VERIFY="1"\n'
        'export DOCKER_HOST="tcp://10.247.0.2:2376"\n'
        'export DOCKER_CERT_PATH="/home/u/.dockyard/machine/machines/h1"\n'
        'export DOCKER_MACHINE_NAME="h1"\n'
        "# Run this command to configure your shell: \n"
        "# eval $(dockyard machine env h1)\n")


@pytest.mark.parametrize(("name", "first", "hint"), [
    ("fish", 'set -gx DOCKER_TLS_VERIFY "1";\n', "# eval (dockyard machine env h1)\n"),
    ("powershell", '$Env:DOCKER_TLS_VERIFY = "1"\n', "# & dockyard machine env h1 | Invoke-Expression\n"),
    ("cmd", "SET DOCKER_TLS_VERIFY=1\n", "REM \t@FOR /f \"tokens=*\" %i IN ('dockyard machine env h1') DO @%i\n"),
    ("tcsh", 'setenv DOCKER_TLS_VERIFY "1";\n', ": eval `dockyard machine env h1`\n"),
    ("emacs", '(setenv "DOCKER_TLS_VERIFY" "1")\n',
     ';; (with-temp-buffer (shell-command "dockyard machine env h1" (current-buffer)) (eval-buffer))\n'),
    ("zsh", 'export DOCKER_TLS_VERIFY="1"\n', "# eval $(dockyard machine env h1)\n"),
])
def test_env_for_other_shells(name: str, first: str, hint: str) -> None:
    out = shell.render(name, VALUES, ARGV)
    assert out.startswith(first)
    assert out.endswith(hint)
    assert "Run this command to configure your shell: \n" in out


@pytest.mark.parametrize(("name", "expected"), [
    ("bash", "unset DOCKER_TLS_VERIFY\nunset DOCKER_HOST\nunset DOCKER_CERT_PATH\nunset DOCKER_MACHINE_NAME\n"),
    ("fish", "set -e DOCKER_TLS_VERIFY;\nset -e DOCKER_HOST;\nset -e DOCKER_CERT_PATH;\nset -e DOCKER_MACHINE_NAME;\n"),
    ("powershell", "Remove-Item Env:\\\\DOCKER_TLS_VERIFY\nRemove-Item Env:\\\\DOCKER_HOST\n"
                   "Remove-Item Env:\\\\DOCKER_CERT_PATH\nRemove-Item Env:\\\\DOCKER_MACHINE_NAME\n"),
    ("cmd", "SET DOCKER_TLS_VERIFY=\nSET DOCKER_HOST=\nSET DOCKER_CERT_PATH=\nSET DOCKER_MACHINE_NAME=\n"),
])
def test_env_unset(name: str, expected: str) -> None:
    argv = ["dockyard", "machine", "env", "--unset"]
    assert shell.render(name, shell.EnvValues(), argv, unset=True) == expected + shell.usage_hint(name, argv)


def test_no_proxy_adds_the_address_once() -> None:
    assert shell.no_proxy("10.0.0.2", {}) == ("NO_PROXY", "10.0.0.2")
    assert shell.no_proxy("10.0.0.2", {"NO_PROXY": "a.example"}) == ("NO_PROXY", "a.example,10.0.0.2")
    assert shell.no_proxy("10.0.0.2", {"no_proxy": "10.0.0.2"}) == ("no_proxy", "10.0.0.2")
    out = shell.render("bash", shell.EnvValues(host="tcp://x:2376", no_proxy=("NO_PROXY", "10.0.0.2")), ARGV)
    assert 'export NO_PROXY="10.0.0.2"\n#' in out


def test_the_hint_quotes_a_program_path_with_spaces_and_detects_the_shell() -> None:
    assert shell.usage_hint("bash", ["/opt/my tools/dockyard", "machine", "env", "h1"]).endswith(
        '# eval $("/opt/my tools/dockyard" machine env h1)\n')
    assert shell.detect({"SHELL": "/usr/bin/fish"}) == "fish"
    assert shell.detect({}) == "bash"
    with pytest.raises(InvalidArgument, match="unknown shell"):
        shell.check_shell("nushell")


# ---------------------------------------------------------------------------------- ls
LS_DEFAULT = ("table {{ .Name }}\t{{ .Active }}\t{{ .DriverName}}\t{{ .State }}\t{{ .URL }}\t{{ .Swarm }}\t"
              "{{ .DockerVersion }}\t{{ .Error}}")
HEADERS = {"Name": "NAME", "Active": "ACTIVE", "DriverName": "DRIVER", "State": "STATE", "URL": "URL",
           "Swarm": "SWARM", "DockerVersion": "DOCKER", "Error": "ERRORS"}


def item(name: str, state: str = "Running", url: str = "tcp://10.63.0.28:2376", version: str = "v1.10.2",
         error: str = "", driver: str = "opennebula", active: str = "-") -> dict[str, str]:
    return {"Name": name, "Active": active, "DriverName": driver, "State": state, "URL": url, "Swarm": "",
            "DockerVersion": version, "Error": error}


def test_ls_table_is_gos_tabwriter_output() -> None:
    """A docker-machine 0.16 ``ls`` as published (trailing spaces included)."""
    template, table = parse_format("", LS_DEFAULT)
    assert table
    out = render_items(template, [item("test")], HEADERS, "commands.HostListItem")
    assert out == ("NAME   ACTIVE   DRIVER       STATE     URL                     SWARM   DOCKER    ERRORS\n"
                   "test   -        opennebula   Running   tcp://10.63.0.28:2376           v1.10.2   \n")


def test_ls_table_with_a_stopped_and_a_broken_machine() -> None:
    template, _ = parse_format("", LS_DEFAULT)
    out = render_items(template, [item("h1", driver="netns", active="*", version="v0.1.0",
                                       url="tcp://10.247.0.2:2376"),
                                  item("h2", "Stopped", "", "Unknown", driver="netns"),
                                  item("h10", "Error", "", "Unknown", "the engine was killed by SIGKILL",
                                       driver="netns")], HEADERS, "commands.HostListItem")
    assert out.splitlines() == [
        "NAME   ACTIVE   DRIVER   STATE     URL                     SWARM   DOCKER    ERRORS",
        "h1     *        netns    Running   tcp://10.247.0.2:2376           v0.1.0    ",
        "h2     -        netns    Stopped                                   Unknown   ",
        "h10    -        netns    Error                                     Unknown   the engine was killed by SIGKILL",
    ]


def test_ls_formats() -> None:
    template, table = parse_format("{{.Name}} {{ .State }}", LS_DEFAULT)
    assert not table
    assert render_items(template, [item("a"), item("b", "Stopped")], None, "x") == "a Running\nb Stopped\n"
    template, table = parse_format("table {{.Name}}\\t{{.State}}", LS_DEFAULT)
    assert render_items(template, [item("a")], HEADERS, "x") == "NAME   STATE\na      Running\n"
    with pytest.raises(InvalidArgument, match="can't evaluate field Nope in type commands.HostListItem"):
        render_items(parse_format("{{.Nope}}", "")[0], [item("a")], None, "commands.HostListItem")


def test_templates_print_as_go_does() -> None:
    doc = {"Driver": {"IPAddress": "10.0.0.2", "Pid": 7}, "Labels": ["a=b", "c=d"], "Map": {"k": True},
           "Name": "h1", "Nothing": None}
    assert parse("{{.Driver.IPAddress}}").execute(doc) == "10.0.0.2"
    assert parse("{{ .Labels }} {{.Map}} {{.Nothing}}").execute(doc) == "[a=b c=d] map[k:true] <nil>"
    assert parse("{{.Missing}}").execute(doc) == "<no value>"
    assert parse("{{json .Driver}}").execute(doc) == '{"IPAddress":"10.0.0.2","Pid":7}'
    assert parse("{{prettyjson .Labels}}").execute(doc) == '[\n    "a=b",\n    "c=d"\n]'
    assert parse("x {{- .Name -}} y").execute(doc) == "xh1y"
    assert parse("{{.}}").execute("plain") == "plain"
    for bad in ("{{if .Name}}x{{end}}", "{{range .Labels}}{{.}}{{end}}", "{{printf \"%s\" .Name}}", "{{.Name"):
        with pytest.raises(InvalidArgument, match="template:"):
            parse(bad)


def test_tabwriter_pads_to_at_least_the_minimum_width() -> None:
    assert tabwrite("a\tb\n") == "a    b\n"
    assert tabwrite("abcdef\tx\nab\ty\n") == "abcdef   x\nab       y\n"


def test_filters_are_docker_machines() -> None:
    f = Filters.parse_cli(["driver=NETNS", "state=running", "name=^h[0-9]$", "label=env=TEST"])
    labels = {"env": "test"}
    assert f.matches("h1", "netns", "Running", labels)
    assert not f.matches("h10", "netns", "Running", labels)
    assert not f.matches("h1", "netns", "Stopped", labels)
    assert not f.matches("h1", "ssh", "Running", labels)
    assert not f.matches("h1", "netns", "Running", {"env": "prod"})
    assert Filters.parse_cli(["name=a", "name=b"]).matches("b", "netns", "Running", {})
    assert not Filters.parse_cli(["swarm=m1"]).matches("h1", "netns", "Running", {})
    with pytest.raises(InvalidArgument, match="Unsupported filter syntax."):
        Filters.parse_cli(["driver"])
    with pytest.raises(InvalidArgument, match="Unsupported filter key 'color'"):
        Filters.parse_cli(["color=red"])
    assert Filters.parse_json({"driver": {"netns": True}}).values == {"driver": ["netns"]}
    assert Filters.parse_json(Filters.parse_cli(["state=Running"]).to_json()).values == {"state": ["Running"]}
    with pytest.raises(InvalidArgument, match="filter name="):
        Filters.parse_json({"name": ["("]})


def test_states_order_durations_and_reasons() -> None:
    assert [display_state(s) for s in ("running", "stopped", "error", "none", "creating")] == \
        ["Running", "Stopped", "Error", "Error", "Creating"]
    assert sorted(["h10", "H2", "h1", "a"], key=natural_key) == ["a", "h1", "H2", "h10"]
    assert [go_duration(s) for s in (0, 0.012, 1.5, 61, 0.0000005)] == ["0s", "12ms", "1.5s", "1m1s", "500ns"]
    assert first_line("the engine (pid 7) was killed by SIGKILL; its log ends:\nline 1\nline 2") == \
        "the engine (pid 7) was killed by SIGKILL"
    assert first_line("one line") == "one line"
    assert first_line("") == ""


# ---------------------------------------------------------------------------------- create options
def test_engine_options_become_dockyardd_flags_and_environment() -> None:
    opts = EngineOptions(labels=["env=test", "zone=a"], storage_driver="vfs", insecure_registry=["reg:5000"],
                         registry_mirror=["https://m.example/hub", "http://127.0.0.1:5001"],
                         opts=["log-level=debug", "debug"], env=["FOO=bar", "EMPTY="]).check()
    assert opts.flags() == ["--label", "env=test", "--label", "zone=a", "--storage-driver", "vfs",
                            "--insecure-registry", "reg:5000", "--registry-mirror", "https://m.example/hub",
                            "--registry-mirror", "http://127.0.0.1:5001", "--log-level=debug", "--debug"]
    assert opts.environment() == {"FOO": "bar", "EMPTY": ""}
    assert opts.label_map() == {"env": "test", "zone": "a"}
    assert EngineOptions.from_json(opts.to_json()) == opts


@pytest.mark.parametrize(("options", "message"), [
    (EngineOptions(registry_mirror=["ftp://mirror.example"]), "invalid mirror: unsupported scheme 'ftp'"),
    (EngineOptions(registry_mirror=["https://m.example/?a=b"]), "invalid mirror: query or fragment"),
    (EngineOptions(registry_mirror=["https://u:pw@m.example"]), "invalid mirror: username/password"),
    (EngineOptions(opts=["data-root=/elsewhere"]), "sets --data-root itself"),
    (EngineOptions(opts=["H=tcp://0.0.0.0:2375"]), "sets --H itself"),
    (EngineOptions(opts=["no-such-flag=1"]), "no flag --no-such-flag"),
    (EngineOptions(opts=["storage-driver"]), "takes a value"),
    (EngineOptions(labels=["novalue"]), "--engine-label 'novalue': expected KEY=VALUE"),
    (EngineOptions(env=["1BAD=x"]), "--engine-env"),
    (EngineOptions(storage_driver="../x"), "not a driver name"),
])
def test_engine_options_dockyardd_cannot_honour_are_refused(options: EngineOptions, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        options.check()


def test_create_requests_and_names() -> None:
    req = MachineCreate.from_json({"Name": "h1", "EngineOptions": {"Labels": ["a=b"]}})
    assert (req.name, req.driver, req.engine.labels) == ("h1", "netns", ["a=b"])
    for name in ("h1", "a.b-c", "9x"):
        assert check_name(name) == name
    for name in ("-x", "a_b", "", "a/b"):
        with pytest.raises(InvalidArgument, match="Invalid hostname specified"):
            check_name(name)
    for bad in ([], {"Name": ""}, {"Name": "h", "DriverOptions": {"a": 1}}, {"Name": "h", "EngineOptions": {"Env": "x"}}):
        with pytest.raises(InvalidArgument):
            MachineCreate.from_json(bad)
