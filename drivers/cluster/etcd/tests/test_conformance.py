"""The etcd store against the plugin-sdk cluster-store conformance kit, on a real etcd."""

import pytest

from dockyard_cluster_etcd.driver import EtcdStore
from dockyard_plugin_sdk.conformance.cluster import ClusterStoreContract


class TestEtcdConformance(ClusterStoreContract):
    driver_class = EtcdStore

    @pytest.fixture
    def store_url(self, module_etcd):
        return module_etcd.url()
