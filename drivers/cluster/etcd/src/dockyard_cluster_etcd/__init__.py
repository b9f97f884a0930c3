"""dockyard-cluster-etcd: the cluster store on etcd v3 (``--cluster-store etcd://H:P/PREFIX``)."""

__version__ = "0.1.0"
