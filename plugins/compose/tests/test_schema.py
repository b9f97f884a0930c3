"""The compose model's validator (:mod:`dockyard_compose.schema`) and what the loader relies on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest

from dockyard_compose import model as m
from dockyard_compose import schema
from dockyard_compose.loader import LoadOptions, load
from dockyard_compose.project import config_hash
from dockyard_compose.schema import Before, Bounds, SchemaError, dump, fields_set, validate


@schema.model
class Inner:
    port: Annotated[int, Bounds(ge=1, le=65535)]
    proto: Literal["tcp", "udp"] = "tcp"

    def _after(self) -> None:
        if self.port == 7:
            raise ValueError("port 7 is reserved here")


def _upper(v: Any) -> Any:
    if isinstance(v, list):
        raise ValueError("a list is not a word")
    return v.upper() if isinstance(v, str) else v


@schema.model
class Outer:
    name: Annotated[str, Before(_upper)]
    flag: bool = False
    ratio: float | None = None
    items: list[Inner] = []
    by_name: dict[str, Inner | None] = {}
    extra: Any = None

    @classmethod
    def _before(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


def problems(data: Any) -> dict[str, str]:
    with pytest.raises(SchemaError) as info:
        validate(Outer, data)
    return {".".join(map(str, loc)): msg for loc, msg in info.value.problems}


def test_valid_input_becomes_the_dataclass_with_coercions() -> None:
    out = validate(Outer, {"name": "web", "flag": "yes", "ratio": 2, "items": [{"port": "80"}],
                           "by_name": {"a": None, "b": {"port": 53, "proto": "udp"}}, "x-note": [1]})
    assert out == Outer(name="WEB", flag=True, ratio=2.0, items=[Inner(port=80)],
                        by_name={"a": None, "b": Inner(port=53, proto="udp")})
    assert isinstance(out.ratio, float)
    assert fields_set(out) == {"name", "flag", "ratio", "items", "by_name"}
    assert fields_set(out.items[0]) == {"port"}


def test_model_before_hook_reshapes_short_syntax() -> None:
    assert validate(Outer, "db").name == "DB"


def test_every_problem_is_reported_with_its_location() -> None:
    found = problems({"name": ["x"], "flag": "maybe", "ratio": "fast", "items": [{"port": 0}, {"proto": "sctp"}],
                      "by_name": {"a": 5}, "nmae": 1})
    assert found == {
        "name": "a list is not a word",
        "flag": "expected a boolean, got str 'maybe'",
        "ratio": "expected a number, got str 'fast'",
        "items.0.port": "expected a value >= 1 and <= 65535, got int 0",
        "items.1.proto": "expected 'tcp' or 'udp', got str 'sctp'",
        "items.1": "missing required key 'port'",
        "by_name.a": "expected a mapping, got int 5",
        "": "unknown key 'nmae' (did you mean 'name'?); only x-* extension keys may be added",
    }


@pytest.mark.parametrize("value,message", [
    (True, "expected an integer, got a boolean"),
    (1.5, "expected an integer, got float 1.5"),
    ("eighty", "expected an integer, got str 'eighty'"),
    (None, "expected an integer, got null"),
])
def test_integers_refuse_what_is_not_a_whole_number(value: Any, message: str) -> None:
    assert problems({"name": "a", "items": [{"port": value}]}) == {"items.0.port": message}


def test_after_hook_problem_is_located_at_the_model() -> None:
    assert problems({"name": "a", "items": [{"port": 80}, {"port": 7}]}) == {"items.1": "port 7 is reserved here"}


def test_non_string_keys_and_wrong_containers() -> None:
    assert problems({"name": "a", "by_name": {1: None}, "items": {"port": 1}}) == {
        "by_name": "keys must be strings, got int 1", "items": "expected a list, got a mapping"}


def test_dump_unset_and_defaults() -> None:
    out = validate(Outer, {"name": "a", "flag": False, "items": [{"port": 80}]})
    assert dump(out, exclude_unset=True) == {"name": "A", "flag": False, "items": [{"port": 80}]}
    assert dump(out, exclude_defaults=True) == {"name": "A", "items": [{"port": 80}]}
    assert dump(out, exclude_defaults=True, exclude={"items"}) == {"name": "A"}
    assert dump(out)["by_name"] == {} and dump(out)["items"] == [{"port": 80, "proto": "tcp"}]


def test_mutable_defaults_are_fresh_and_must_be_empty() -> None:
    a, b = Outer(name="a"), Outer(name="b")
    a.items.append(Inner(port=1))
    assert b.items == []
    with pytest.raises(TypeError, match="only an empty list or mapping"):
        @schema.model
        class Bad:
            xs: list[int] = [1]  # noqa: RUF012


def test_unsupported_annotation_is_a_programming_error() -> None:
    @schema.model
    class Odd:
        v: int | str = 1

    with pytest.raises(TypeError, match="only X | None unions"):
        validate(Odd, {})


# --- what the rest of the plugin relies on ------------------------------------------------------------

GOLDEN = """\
services:
  web:
    image: busybox
    command: sh -c "echo hi"
    environment: [A=1, B=two]
    labels: {tier: front}
    ports: ["127.0.0.1:8080:80", 9090]
    volumes: ["data:/data:ro"]
    healthcheck: {test: "true", interval: 10, retries: 3}
    deploy: {replicas: 1, resources: {limits: {cpus: 0.5, memory: 128m}}}
    ulimits: {nofile: 1024}
    cpus: 2
    tty: "true"
volumes:
  data: {}
"""


def test_config_hash_is_unchanged_since_the_pydantic_model(tmp_path: Path) -> None:
    """Containers created by an earlier dockyard must not be recreated after an upgrade: this
    hash was computed by the pydantic model this validator replaced."""
    (tmp_path / "compose.yaml").write_text(GOLDEN)
    svc = load(LoadOptions(files=[str(tmp_path / "compose.yaml")], environ={}, cwd=str(tmp_path))).model
    assert config_hash(svc.services["web"]) == "eed072eecebaa52e8811f415dea34a4ba4e2771178e563145970026a0fe56380"


def test_model_import_stays_light() -> None:
    """The point of :mod:`schema`: loading a file imports no pydantic (0.36 s on every command)."""
    code = ("import sys; from dockyard_compose.loader import load; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'pydantic', 'jsonschema'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_service_key_is_a_field() -> None:
    assert {"image", "ports", "healthcheck", "deploy", "x-anything"} - m.SERVICE_KEYS == {"x-anything"}


def test_models_compare_and_print_as_dataclasses() -> None:
    a, b = Inner(port=80), Inner(port=80)
    assert a == b and a != Inner(port=81) and a != "Inner(port=80)"
    assert repr(a) == "Inner(port=80, proto='tcp')"
    with pytest.raises(TypeError):
        hash(a)
