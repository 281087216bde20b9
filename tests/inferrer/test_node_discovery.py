"""Nodes found by DNS (INFERRER_NODES_DNS: Swarm's `tasks.modelhost`, a Kubernetes headless Service):
the name resolved for real, each address asked its id by a real node app, in-process. The Swarm
test (tests/compose/test_swarm_stack.py) runs it against tasks that come and go."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from inferrer.control.node_discovery import NodeDiscovery
from inferrer.settings import InferrerSettings
from inferrer.state.node_directory import NodeDirectory
from tests.in_process import AUTH, ByHost, in_process_fleet

pytestmark = pytest.mark.anyio


async def test_each_address_of_the_name_is_listed_under_the_id_its_node_answers(tmp_path: Path) -> None:
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        # "localhost" resolves to 127.0.0.1 (and perhaps ::1, where no node answers): the node
        # that answers there is modelhost-2, whatever its address.
        to_nodes = ByHost({"127.0.0.1": fleet.node_apps["modelhost-2"]})
        async with httpx.AsyncClient(transport=to_nodes, headers=AUTH) as client:
            directory = NodeDirectory(None)
            discovery = NodeDiscovery("localhost:8101", "http", client, directory, 60, 1.0)
            await discovery.refresh()
            assert directory.current() == {"modelhost-2": "http://127.0.0.1:8101"}
            assert directory.node_at("127.0.0.1:8101") == "modelhost-2"

            # The node stops answering (busy, restarting) but is still in DNS: it stays listed for
            # a few rounds, then not (its address may be another pod's by now).
            to_nodes._transports.clear()
            for _ in range(3):
                await discovery.refresh()
                assert directory.current() == {"modelhost-2": "http://127.0.0.1:8101"}
            await discovery.refresh()
            assert directory.current() == {}

            # A name with no records (the service scaled to 0): no nodes.
            empty = NodeDiscovery("no-node.invalid:8101", "http", client, directory, 60, 1.0)
            await empty.refresh()
            assert directory.current() == {}


async def test_a_name_that_never_answered_is_not_listed(tmp_path: Path) -> None:
    """An address whose node never answered has no id yet: it is not listed (it syncs by itself)."""
    async with httpx.AsyncClient(transport=ByHost({})) as client:
        directory = NodeDirectory(None)
        await NodeDiscovery("localhost:8101", "http", client, directory, 60, 1.0).refresh()
        assert directory.current() == {}


def test_two_tasks_of_one_slot_are_both_listed() -> None:
    """A rolling update (start-first) runs the new task of a slot beside the old one."""
    discovery = NodeDiscovery("tasks.modelhost:8101", "http", httpx.AsyncClient(), NodeDirectory(None), 1, 1)
    listed = discovery._by_id({"10.0.1.5": "modelhost-2", "10.0.1.9": "modelhost-2"}, {})
    assert listed == {"modelhost-2": "http://10.0.1.5:8101", "modelhost-2@10.0.1.9": "http://10.0.1.9:8101"}
    # An address that answered takes the plain id before one known only from earlier rounds.
    listed = discovery._by_id({"10.0.1.9": "modelhost-2"}, {"10.0.1.5": "modelhost-2"})
    assert listed == {"modelhost-2": "http://10.0.1.9:8101", "modelhost-2@10.0.1.5": "http://10.0.1.5:8101"}


@pytest.mark.parametrize("value", ["tasks.modelhost", "tasks.modelhost:http", ":8101", "x:0", "x:70000"])
def test_a_name_without_a_port_is_refused_at_start(value: str) -> None:
    with pytest.raises(ValidationError, match="name:port"):
        InferrerSettings(nodes_dns=value)


def test_a_node_file_and_a_dns_name_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not both"):
        InferrerSettings(nodes_dns="tasks.modelhost:8101", nodes_file=tmp_path / "nodes.json")
