"""Expressions: Swarm classic's documented examples (docs/scheduler/filter.md), and what is
malformed."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidArgument
from dockyard_cluster_scheduler.expr import parse


@pytest.mark.parametrize(("text", "key", "op", "value", "soft"), [
    ("node==node1", "node", "==", "node1", False),
    ("node!=node1", "node", "!=", "node1", False),
    ("region!=us*", "region", "!=", "us*", False),
    ("node==/node[12]/", "node", "==", "/node[12]/", False),
    ("storage==~ssd", "storage", "==", "ssd", True),
    ("container!=~redis*", "container", "!=", "redis*", True),
    ("Com.Example.Type==frontend", "com.example.type", "==", "frontend", False),
    ("image==docker.io/library/redis:7", "image", "==", "docker.io/library/redis:7", False),
])
def test_parse(text, key, op, value, soft):
    e = parse(text)
    assert (e.key, e.op, e.value, e.soft, e.text) == (key, op, value, soft, text)


# (expression, value, matches) -- the examples of Swarm's filter documentation
MATCHES = [
    ("node==node1", "node1", True),
    ("node==node1", "node2", False),
    ("node!=node1", "node1", False),
    ("node!=node1", "node2", True),
    ("region!=us*", "us-east", False),
    ("region!=us*", "eu-west", True),
    ("region!=us*", "", True),  # a node without the label
    ("region==us*", "", False),
    ("node==/node[12]/", "node1", True),
    ("node==/node[12]/", "node2", True),
    ("node==/node[12]/", "node3", False),
    (r"node==/node\d/", "node7", True),
    (r"node==/node\d/", "nodeX", False),
    ("node!=/node-[01]/", "node-0", False),
    ("node!=/node-[01]/", "node-2", True),
    (r"node!=/foo\[bar\]/", "foo[bar]", False),
    (r"node!=/foo\[bar\]/", "foo", True),
    ("node==/(?i)node1/", "NoDe1", True),
    ("node==node1", "NODE1", False),  # case-sensitive unless (?i)
    ("region==us.east", "us-east", False),  # a glob's other characters are literal
    ("region==us.east", "us.east", True),
    ("region==*east*", "us-east-1", True),
]


@pytest.mark.parametrize(("text", "what", "expected"), MATCHES)
def test_match(text, what, expected):
    assert parse(text).match(what) is expected


def test_match_any_of_several():
    e = parse("container==web")
    assert e.match("abc", "web") and not e.match() and parse("container!=web").match()


@pytest.mark.parametrize(("text", "message"), [
    ("storage=ssd", "one of the operators ==, != is expected"),
    ("storage", "one of the operators"),
    ("s==ssd", "invalid key 's'"),
    ("9a==ssd", "invalid key '9a'"),
    ("st orage==ssd", "invalid key 'st orage'"),
    ("storage==", "invalid value ''"),
    ("storage==~", "invalid value ''"),
    ("storage==ssd;rm", "invalid value 'ssd;rm'"),
    ("node==/[/", "invalid regular expression /\\[/"),
])
def test_malformed(text, message):
    with pytest.raises(InvalidArgument, match=message) as info:
        parse(text, "constraint")
    assert str(info.value).startswith(f"constraint {text!r}")
