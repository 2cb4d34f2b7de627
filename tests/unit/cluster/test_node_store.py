"""The node's image store is reused within one boot of the machine and started afresh otherwise
(a store from a crash or another machine may hold unpacked layers containerd would trust)."""

from conch_cluster import node as node_module
from conch_cluster.node import RealNode


class _Paths:
    def __init__(self, store):
        self.image_store = store


def _node(store) -> RealNode:
    node = RealNode.__new__(RealNode)  # only the paths matter here: no network, no processes
    node.paths = _Paths(store)
    return node


def test_a_store_of_this_boot_is_kept_and_one_of_another_boot_is_emptied(tmp_path):
    store = tmp_path / "containerd"
    node = _node(store)
    node._forget_store_of_another_boot()
    assert (store / "conch-boot-id").read_text() == node_module._boot_id()
    (store / "layer").write_text("unpacked")
    node._forget_store_of_another_boot()
    assert (store / "layer").exists()
    (store / "conch-boot-id").write_text("another boot")
    node._forget_store_of_another_boot()
    assert not (store / "layer").exists() and (store / "conch-boot-id").read_text() == node_module._boot_id()


def test_a_store_without_a_marker_is_distrusted_unless_empty(tmp_path):
    store = tmp_path / "containerd"
    store.mkdir()
    (store / "layer").write_text("unpacked")
    _node(store)._forget_store_of_another_boot()
    assert not (store / "layer").exists()
