from __future__ import annotations

from pathlib import Path

import pytest

from deploy.topology import EXAMPLE_ENV_FILE, Node, TopologyError, load_topology


def test_example_topology_has_three_loopback_nodes() -> None:
    topology = load_topology(EXAMPLE_ENV_FILE)
    assert [n.id for n in topology.nodes] == ["modelhost-1", "modelhost-2", "modelhost-3"]
    assert [n.url for n in topology.nodes] == [
        "http://127.0.0.1:8101",
        "http://127.0.0.1:8102",
        "http://127.0.0.1:8103",
    ]
    assert (topology.inferrer_port, topology.nginx_port, topology.prometheus_port) == (
        8000,
        8080,
        9090,
    )


def test_node_count_override_trims_and_extends() -> None:
    topology = load_topology(EXAMPLE_ENV_FILE)
    assert [n.id for n in topology.with_node_count(1).nodes] == ["modelhost-1"]
    five = topology.with_node_count(5).nodes
    assert five[3:] == (Node(4, "127.0.0.1", 8104), Node(5, "127.0.0.1", 8105))
    assert topology.with_node_count(0).nodes == ()  # an autoscaled fleet at zero


def test_a_node_may_live_on_another_machine(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(EXAMPLE_ENV_FILE.read_text() + "MODELHOST_4_HOST=10.1.2.3\nMODELHOST_4_PORT=8101\n")
    assert load_topology(env).nodes[-1].url == "http://10.1.2.3:8101"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("MODELHOST_4_HOST=127.0.0.1\n", "needs both"),
        ("MODELHOST_4_HOST=127.0.0.1\nMODELHOST_4_PORT=99999\n", "not a port"),
        ("MODELHOST_4_HOST=127.0.0.1\nMODELHOST_4_PORT=8101\n", "share the address"),
    ],
)
def test_bad_topologies_are_refused(tmp_path: Path, extra: str, words: str) -> None:
    env = tmp_path / ".env"
    env.write_text(EXAMPLE_ENV_FILE.read_text() + extra)
    with pytest.raises(TopologyError, match=words):
        load_topology(env)


def test_required_keys(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("MODELHOST_1_HOST=127.0.0.1\nMODELHOST_1_PORT=8101\n")
    with pytest.raises(TopologyError, match="INFERRER_HOST"):
        load_topology(env)
