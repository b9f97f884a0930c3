"""The SDK's pytest plugin (``pytest11`` entry point ``dockyard``): fixtures for authors."""

from __future__ import annotations
