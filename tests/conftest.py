"""Cross-package tests (integration, e2e, meta).

The real-daemon fixtures (``dockyardd``, ``dockyardd_factory``, ``start_dockyardd``,
``dockyardd_client``, ``dockyard_owners``, ``no_leaks``) come from the plugin SDK's pytest plugin
(``pytest11`` entry point ``dockyard``), as they do for any distribution's tests and for a third
party's; the helpers behind them are in ``dockyard_plugin_sdk.testing`` (``Daemon``,
``start_daemon``, ``wait_for``). Nothing here: a conftest is not imported by path elsewhere.
"""
