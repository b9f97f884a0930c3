"""The registry sessions core's :class:`~dockyard.specs.storage.RegistrySessions` describes,
offered to other plugins (provenance's signatures) through ``dockyard_provides``: a thin face on
:class:`~dockyard_distribution.client.RegistryClient`, which keeps auth, TLS and retries."""

from __future__ import annotations

import hashlib
from typing import Any

from dockyard.specs.storage import RegistryManifest, RegistrySession, RegistrySessions
from dockyard_distribution.auth import AuthConfig, scope_for
from dockyard_distribution.client import RegistryClient


class ClientSession(RegistrySession):
    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self.host = client.host

    async def get_manifest(self, repository: str, reference: str) -> RegistryManifest:
        m = await self.client.get_manifest(repository, reference)
        return RegistryManifest(m.body, m.media_type, m.digest)

    async def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        return await self.client.put_manifest(repository, reference, body, media_type)

    async def get_blob(self, repository: str, digest: str, max_size: int = 4 << 20) -> bytes:
        return await self.client.get_blob_bytes(repository, digest, max_size)

    async def put_blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not await self.client.blob_exists(repository, digest):
            location = await self.client.start_upload(repository)
            await self.client._close_upload(  # one monolithic PUT of a small blob
                repository, scope_for(repository, "pull,push"), location, digest,
                {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}, lambda: data)
        return digest

    async def list_tags(self, repository: str) -> list[str]:
        return await self.client.list_tags(repository)

    async def close(self) -> None:
        await self.client.close()


class ClientSessions(RegistrySessions):
    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel

    def open(self, host: str, auth: dict[str, Any] | None = None) -> RegistrySession:
        from dockyard_distribution.api import registry_options

        options = registry_options(self.kernel)
        if host == "docker.io":
            host = options.hub_host
        cfg = AuthConfig.from_dict(auth) if auth else None
        return ClientSession(RegistryClient(host, options, cfg))
