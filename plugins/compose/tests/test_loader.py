"""Loading: interpolation, .env, merge rules, extends, include, profiles, hashes, ``config`` output.

Merge cases follow the compose specification's merge section (docs.docker.com/reference/
compose-file/merge): mappings merged, sequences appended, command/entrypoint/healthcheck.test
replaced, ports/volumes/secrets/configs unique by their key, ``!reset`` and ``!override``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dockyard_compose.errors import ComposeError
from dockyard_compose.interpolate import InterpolationError, interpolate, parse_env_file
from dockyard_compose.loader import LoadOptions, load
from dockyard_compose.project import config_hash, order


def write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def loadp(d: Path, *files: str, env: dict[str, str] | None = None, **kw):
    return load(LoadOptions(files=[str(d / f) for f in files], environ=env or {}, cwd=str(d), **kw))


# --- interpolation ------------------------------------------------------------------------------------

ENV = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize("text,expected", [
    ("$SET", "value"), ("${SET}", "value"), ("pre-${SET}-post", "pre-value-post"),
    ("$UNSET", ""), ("${UNSET}", ""),
    ("${UNSET:-d}", "d"), ("${EMPTY:-d}", "d"), ("${SET:-d}", "value"),
    ("${UNSET-d}", "d"), ("${EMPTY-d}", ""), ("${SET-d}", "value"),
    ("${SET:+r}", "r"), ("${EMPTY:+r}", ""), ("${EMPTY+r}", "r"), ("${UNSET+r}", ""),
    ("$$SET", "$SET"), ("$${SET}", "${SET}"), ("a$$b", "a$b"),
    ("${UNSET:-${SET}}", "value"), ("${UNSET:-x${UNSET2:-y}z}", "xyz"),
    ("${EMPTY?err}", ""),
])
def test_interpolation_operators(text: str, expected: str) -> None:
    assert interpolate(text, ENV) == expected


@pytest.mark.parametrize("text,fragment", [
    ("${UNSET:?need it}", "need it"), ("${EMPTY:?need it}", "need it"), ("${UNSET?gone}", "gone"),
    ("${", "missing '}'"), ("${1X}", "does not start with a variable name"),
    ("${SET:x}", "unexpected ':'"), ("$", "lone '$'"), ("$-", "'$' must be followed"),
])
def test_interpolation_errors(text: str, fragment: str) -> None:
    with pytest.raises(InterpolationError, match=None) as info:
        interpolate(text, ENV)
    assert fragment in str(info.value)


def test_dotenv_parsing(tmp_path: Path) -> None:
    p = write(tmp_path, ".env", "# comment\nA=1\nexport B = two\nC='lit $A'\nD=\"x\\ny ${A}\"\n"
              "E=plain # trailing comment\nF=${A}${B}\nG\nH=\n")
    assert parse_env_file(p, {"G": "from-os"}) == {
        "A": "1", "B": "two", "C": "lit $A", "D": "x\ny 1", "E": "plain", "F": "1two", "G": "from-os", "H": ""}


def test_dotenv_feeds_interpolation_and_the_process_environment_wins(tmp_path: Path) -> None:
    write(tmp_path, ".env", "TAG=fromdotenv\nPORT=8081\n")
    write(tmp_path, "compose.yaml", "services:\n  web:\n    image: busybox:${TAG}\n    ports: ['${PORT}:80']\n")
    loaded = loadp(tmp_path, "compose.yaml", env={"TAG": "fromos"})
    web = loaded.model.services["web"]
    assert web.image == "busybox:fromos"
    assert web.ports[0].published == "8081"


def test_env_file_option_replaces_dotenv(tmp_path: Path) -> None:
    write(tmp_path, ".env", "TAG=dotenv\n")
    write(tmp_path, "other.env", "TAG=other\n")
    write(tmp_path, "compose.yaml", "services:\n  web:\n    image: busybox:${TAG}\n")
    loaded = loadp(tmp_path, "compose.yaml", env_files=[str(tmp_path / "other.env")])
    assert loaded.model.services["web"].image == "busybox:other"


def test_service_env_file_and_environment(tmp_path: Path) -> None:
    write(tmp_path, "web.env", "A=from-file\nB=from-file\n")
    write(tmp_path, "compose.yaml", "services:\n  web:\n    image: busybox\n    env_file: web.env\n"
          "    environment:\n      B: from-environment\n      C:\n      D:\n")
    loaded = loadp(tmp_path, "compose.yaml", env={"C": "from-shell"})
    assert loaded.model.services["web"].environment == {
        "A": "from-file", "B": "from-environment", "C": "from-shell", "D": None}


def test_missing_required_env_file_is_located(tmp_path: Path) -> None:
    f = write(tmp_path, "compose.yaml", "services:\n  web:\n    image: busybox\n    env_file: [nope.env]\n")
    with pytest.raises(ComposeError) as info:
        loadp(tmp_path, "compose.yaml")
    assert str(info.value).startswith(f"{f}: services.web.env_file[0]: env file")


def test_optional_env_file(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml",
          "services:\n  web:\n    image: busybox\n    env_file: [{path: nope.env, required: false}]\n")
    assert loadp(tmp_path, "compose.yaml").model.services["web"].environment == {}


# --- merging several -f files (the spec's documented results) ----------------------------------------


def test_merge_mapping(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "services:\n  foo:\n    image: busybox\n    environment: {key1: value1, key2: value2}\n")
    write(tmp_path, "b.yaml", "services:\n  foo:\n    environment: [key2=VALUE, key3=value3]\n")
    env = loadp(tmp_path, "a.yaml", "b.yaml").model.services["foo"].environment
    assert env == {"key1": "value1", "key2": "VALUE", "key3": "value3"}


def test_merge_sequence_appends(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "services:\n  foo:\n    image: busybox\n    dns: [1.1.1.1]\n")
    write(tmp_path, "b.yaml", "services:\n  foo:\n    dns: [8.8.8.8]\n")
    assert loadp(tmp_path, "a.yaml", "b.yaml").model.services["foo"].dns == ["1.1.1.1", "8.8.8.8"]


def test_merge_shell_commands_are_replaced(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "services:\n  foo:\n    image: busybox\n    command: [echo, foo]\n"
          "    entrypoint: [a]\n    healthcheck: {test: [CMD, a], interval: 5s}\n")
    write(tmp_path, "b.yaml", "services:\n  foo:\n    command: [echo, bar]\n    entrypoint: b\n"
          "    healthcheck: {test: [CMD, b]}\n")
    foo = loadp(tmp_path, "a.yaml", "b.yaml").model.services["foo"]
    assert foo.command == ["echo", "bar"]
    assert foo.entrypoint == ["b"]
    assert foo.healthcheck.test == ["CMD", "b"] and foo.healthcheck.interval == "5s"


def test_merge_unique_resources(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "services:\n  foo:\n    image: busybox\n    ports: ['8080:80', '9090:90']\n"
          "    volumes: ['/a:/data', '/b:/other']\nvolumes: {}\n")
    write(tmp_path, "b.yaml", "services:\n  foo:\n    ports: ['8080:80', '7070:70']\n"
          "    volumes: ['/c:/data:ro']\n")
    foo = loadp(tmp_path, "a.yaml", "b.yaml").model.services["foo"]
    assert [(p.published, p.target) for p in foo.ports] == [("8080", 80), ("9090", 90), ("7070", 70)]
    assert [(v.source, v.target, v.read_only) for v in foo.volumes] == [("/c", "/data", True),
                                                                         ("/b", "/other", False)]


def test_merge_reset_and_override_tags(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "services:\n  foo:\n    image: busybox\n    ports: ['8080:80']\n"
          "    environment: {A: '1', B: '2'}\n    dns: [1.1.1.1]\n")
    write(tmp_path, "b.yaml", "services:\n  foo:\n    ports: !reset []\n    environment: !override {C: '3'}\n"
          "    dns: !override [9.9.9.9]\n")
    foo = loadp(tmp_path, "a.yaml", "b.yaml").model.services["foo"]
    assert foo.ports == []
    assert foo.environment == {"C": "3"}
    assert foo.dns == ["9.9.9.9"]


def test_merge_adds_services_and_top_level_entries(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "services:\n  a:\n    image: busybox\n")
    write(tmp_path, "b.yaml", "services:\n  b:\n    image: busybox\n    volumes: ['v:/v']\nvolumes:\n  v:\n")
    loaded = loadp(tmp_path, "a.yaml", "b.yaml")
    assert sorted(loaded.model.services) == ["a", "b"]
    assert loaded.model.volumes["v"].name == f"{tmp_path.name.lower()}_v".replace(".", "")


def test_default_override_file_is_read(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml", "services:\n  a:\n    image: busybox\n")
    write(tmp_path, "compose.override.yaml", "services:\n  a:\n    image: busybox:override\n")
    loaded = load(LoadOptions(environ={}, cwd=str(tmp_path)))
    assert loaded.model.services["a"].image == "busybox:override"
    assert [p.name for p in loaded.config_files] == ["compose.yaml", "compose.override.yaml"]


# --- extends ------------------------------------------------------------------------------------------


def test_extends_same_file(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml",
          "services:\n  base:\n    image: busybox\n    environment: {A: '1'}\n    command: [base]\n"
          "  web:\n    extends: base\n    environment: {B: '2'}\n    command: [web]\n")
    web = loadp(tmp_path, "compose.yaml").model.services["web"]
    assert web.image == "busybox"
    assert web.environment == {"A": "1", "B": "2"}
    assert web.command == ["web"]
    assert web.extends is None


def test_extends_other_file_resolves_paths_from_that_file(tmp_path: Path) -> None:
    write(tmp_path, "common/base.yaml",
          "services:\n  app:\n    build: ./ctx\n    env_file: app.env\n    volumes: ['./data:/data']\n")
    write(tmp_path, "common/app.env", "FROM_BASE=yes\n")
    (tmp_path / "common/ctx").mkdir()
    write(tmp_path, "compose.yaml",
          "services:\n  web:\n    extends:\n      file: common/base.yaml\n      service: app\n    ports: ['80']\n")
    web = loadp(tmp_path, "compose.yaml").model.services["web"]
    assert web.build.context == str((tmp_path / "common/ctx").resolve())
    assert web.environment == {"FROM_BASE": "yes"}
    assert web.volumes[0].source == str((tmp_path / "common/data").resolve())
    assert web.ports[0].target == 80


def test_extends_chain(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml",
          "services:\n  a:\n    image: busybox\n    labels: {a: '1'}\n  b:\n    extends: a\n    labels: {b: '1'}\n"
          "  c:\n    extends: b\n    labels: {c: '1'}\n")
    assert loadp(tmp_path, "compose.yaml").model.services["c"].labels == {"a": "1", "b": "1", "c": "1"}


# --- include ------------------------------------------------------------------------------------------


def test_include_brings_resources_with_their_own_env(tmp_path: Path) -> None:
    write(tmp_path, "sub/compose.yaml", "services:\n  db:\n    image: busybox:${DBTAG}\n    volumes: ['d:/d']\n"
          "volumes:\n  d:\n")
    write(tmp_path, "sub/.env", "DBTAG=sub\n")
    write(tmp_path, "compose.yaml", "include: [sub/compose.yaml]\nservices:\n  web:\n    image: busybox\n"
          "    depends_on: [db]\n")
    loaded = loadp(tmp_path, "compose.yaml")
    assert loaded.model.services["db"].image == "busybox:sub"
    assert "d" in loaded.model.volumes
    assert order(loaded.model) == ["db", "web"]


def test_include_conflict_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "sub.yaml", "services:\n  web:\n    image: busybox\n")
    f = write(tmp_path, "compose.yaml", "include: [sub.yaml]\nservices:\n  web:\n    image: busybox\n")
    with pytest.raises(ComposeError) as info:
        loadp(tmp_path, "compose.yaml")
    assert str(info.value).startswith(f"{f}: services.web: service 'web' is also defined by the included")


# --- profiles -----------------------------------------------------------------------------------------

PROFILES = ("services:\n  web:\n    image: busybox\n  debug:\n    image: busybox\n    profiles: [debug]\n"
            "  tools:\n    image: busybox\n    profiles: [tools, debug]\n")


def test_profiles_inactive_by_default(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml", PROFILES)
    loaded = loadp(tmp_path, "compose.yaml")
    assert list(loaded.model.services) == ["web"]
    assert sorted(loaded.disabled) == ["debug", "tools"]


def test_profile_activation(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml", PROFILES)
    assert sorted(loadp(tmp_path, "compose.yaml", profiles=["tools"]).model.services) == ["tools", "web"]
    assert sorted(loadp(tmp_path, "compose.yaml", env={"COMPOSE_PROFILES": "debug"}).model.services) == \
        ["debug", "tools", "web"]
    assert sorted(loadp(tmp_path, "compose.yaml", profiles=["*"]).model.services) == ["debug", "tools", "web"]


def test_targeted_service_is_enabled_with_its_profiles(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml", PROFILES)
    assert sorted(loadp(tmp_path, "compose.yaml", targets=["debug"]).model.services) == ["debug", "tools", "web"]


def test_dependency_on_a_disabled_service_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml", "services:\n  web:\n    image: busybox\n    depends_on: [db]\n"
          "  db:\n    image: busybox\n    profiles: [db]\n")
    with pytest.raises(ComposeError, match=r"services\.web\.depends_on\.db: .*disabled by its profiles"):
        loadp(tmp_path, "compose.yaml")


# --- ordering, names, hashes ----------------------------------------------------------------------------


def test_dependency_order(tmp_path: Path) -> None:
    write(tmp_path, "compose.yaml",
          "services:\n  web:\n    image: busybox\n    depends_on: [api]\n  api:\n    image: busybox\n"
          "    depends_on: {db: {condition: service_healthy}, cache: {condition: service_started}}\n"
          "  db:\n    image: busybox\n  cache:\n    image: busybox\n  lone:\n    image: busybox\n")
    model = loadp(tmp_path, "compose.yaml").model
    seq = order(model)
    assert seq.index("db") < seq.index("api") < seq.index("web")
    assert seq.index("cache") < seq.index("api")
    assert order(model, ["api"]) == ["cache", "db", "api"]
    assert order(model, ["api"], with_deps=False) == ["api"]


def test_project_name_sources(tmp_path: Path) -> None:
    d = tmp_path / "My.App_Dir"
    write(d, "compose.yaml", "services:\n  a:\n    image: busybox\n")
    assert loadp(d, "compose.yaml").name == "myapp_dir"
    assert loadp(d, "compose.yaml", env={"COMPOSE_PROJECT_NAME": "fromenv"}).name == "fromenv"
    assert loadp(d, "compose.yaml", project_name="fromflag").name == "fromflag"
    write(d, "named.yaml", "name: fromfile\nservices:\n  a:\n    image: busybox\n")
    assert loadp(d, "named.yaml").name == "fromfile"


def _hash(tmp_path: Path, text: str, name: str = "compose.yaml") -> str:
    write(tmp_path, name, text)
    return config_hash(loadp(tmp_path, name).model.services["web"])


def test_config_hash_is_stable_across_syntax_and_order(tmp_path: Path) -> None:
    a = _hash(tmp_path, "services:\n  web:\n    image: busybox\n    environment: [A=1, B=2]\n"
              "    ports: ['127.0.0.1:8080:80']\n    command: sh -c 'echo hi'\n", "a.yaml")
    b = _hash(tmp_path, "services:\n  web:\n    command: [sh, -c, echo hi]\n    ports:\n"
              "      - {target: 80, published: 8080, host_ip: 127.0.0.1, protocol: tcp}\n"
              "    environment: {B: '2', A: '1'}\n    image: busybox\n", "b.yaml")
    assert a == b
    assert a == _hash(tmp_path, "services:\n  web:\n    image: busybox\n    environment: [A=1, B=2]\n"
                      "    ports: ['127.0.0.1:8080:80']\n    command: sh -c 'echo hi'\n", "a.yaml")
    assert len(a) == 64


def test_config_hash_changes_with_the_config_but_not_with_replicas(tmp_path: Path) -> None:
    base = _hash(tmp_path, "services:\n  web:\n    image: busybox\n    environment: [A=1]\n")
    assert base != _hash(tmp_path, "services:\n  web:\n    image: busybox\n    environment: [A=2]\n")
    assert base == _hash(tmp_path, "services:\n  web:\n    image: busybox\n    environment: [A=1]\n    scale: 3\n")
    assert base == _hash(tmp_path, "services:\n  web:\n    image: busybox\n    environment: [A=1]\n"
                         "    deploy: {replicas: 2}\n")
    assert base == _hash(tmp_path, "services:\n  web:\n    image: busybox\n    environment: [A=1]\n"
                         "    x-note: ignored\n")


def test_config_hash_follows_dotenv(tmp_path: Path) -> None:
    write(tmp_path, ".env", "V=1\n")
    one = _hash(tmp_path, "services:\n  web:\n    image: busybox\n    environment: [V=$V]\n")
    write(tmp_path, ".env", "V=2\n")
    assert one != _hash(tmp_path, "services:\n  web:\n    image: busybox\n    environment: [V=$V]\n")


# --- `config` output ----------------------------------------------------------------------------------


def test_config_prints_the_normalized_model(tmp_path: Path, compose_cli) -> None:
    write(tmp_path, ".env", "PORT=8088\n")
    write(tmp_path, "compose.yaml",
          "name: demo\nx-base: &base\n  image: busybox\nservices:\n  web:\n    <<: *base\n"
          "    ports: ['127.0.0.1:${PORT}:80']\n    volumes: ['data:/data', './site:/www:ro']\n"
          "    depends_on: [db]\n    command: httpd -f\n  db:\n    <<: *base\nvolumes:\n  data:\n")
    res = compose_cli("config", cwd=tmp_path, env={"DOCKYARD_HOST": None, "DOCKER_HOST": None})
    assert res.exit_code == 0, res.output
    data = yaml.safe_load(res.output)
    assert data["name"] == "demo"
    web = data["services"]["web"]
    assert web["ports"] == [{"target": 80, "published": "8088", "host_ip": "127.0.0.1", "protocol": "tcp"}]
    assert web["volumes"][0] == {"type": "volume", "source": "data", "target": "/data", "read_only": False}
    assert web["volumes"][1]["source"] == str((tmp_path / "site").resolve())
    assert web["command"] == ["httpd", "-f"]
    assert web["networks"] == {"default": None}
    assert web["depends_on"] == {"db": {"condition": "service_started", "required": True}}
    assert data["networks"] == {"default": {"name": "demo_default"}}
    assert data["volumes"] == {"data": {"name": "demo_data"}}
    res = compose_cli("config", "--services", cwd=tmp_path)
    assert res.output.split() == ["web", "db"]
    res = compose_cli("config", "--hash", "web", cwd=tmp_path)
    assert res.output.split()[0] == "web" and len(res.output.split()[1]) == 64


def test_every_command_answers_help(compose_cli) -> None:
    from click.testing import CliRunner

    from dockyard_compose.cli import compose

    assert "Usage:" in compose_cli("--help").output  # through the root group's lazy loading
    for name in compose.commands:
        res = CliRunner().invoke(compose, [name, "--help"])
        assert res.exit_code == 0, (name, res.output)
        assert "Usage:" in res.output


def test_paths_in_override_files_are_relative_to_the_project_directory(tmp_path: Path) -> None:
    """The spec's merge rules: paths in every -f file are relative to the base file's directory."""
    write(tmp_path, "app/compose.yaml", "services:\n  web:\n    image: busybox\n    volumes: ['./a:/a']\n")
    write(tmp_path, "overrides/dev.yaml", "services:\n  web:\n    volumes: ['./b:/b']\n    build: ./ctx\n")
    loaded = loadp(tmp_path, "app/compose.yaml", "overrides/dev.yaml")
    web = loaded.model.services["web"]
    assert [v.source for v in web.volumes] == [str((tmp_path / "app/a").resolve()),
                                               str((tmp_path / "app/b").resolve())]
    assert web.build.context == str((tmp_path / "app/ctx").resolve())
    loaded = loadp(tmp_path, "app/compose.yaml", project_directory=str(tmp_path / "overrides"))
    assert loaded.model.services["web"].volumes[0].source == str((tmp_path / "overrides/a").resolve())
