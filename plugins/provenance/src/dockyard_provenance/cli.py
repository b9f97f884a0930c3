"""``dockyard trust``: cosign's key-pair workflow (entry point ``dockyard.cli``: ``trust``).

``key generate|import|list`` write and read ``NAME.key``/``NAME.pub`` in cosign's format;
``sign``, ``verify`` and ``inspect`` talk to the image's registry directly, as cosign does (no
daemon needed), through core's ``RegistrySessions`` (offered by dockyard-distribution). Loopback
registries are reached over plain HTTP, as dockerd does; ``DOCKYARD_INSECURE_REGISTRIES``
(comma-separated host[:port]) adds others.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

T = TypeVar("T")


def _run(work: Callable[[Any], Awaitable[T]], settings: dict[str, Any] | None = None) -> T:
    """Run ``work(kernel)`` on a throwaway client-side kernel (``settings``: more of its
    config); typed errors become exit 1."""
    import asyncio
    import tempfile

    from dockyard.config import Config
    from dockyard.errors import DockyardError
    from dockyard.kernel import Kernel

    insecure = [h for h in os.environ.get("DOCKYARD_INSECURE_REGISTRIES", "").split(",") if h]

    async def main(root: str) -> T:
        kernel = Kernel.build(Config(values={"data-root": f"{root}/d", "exec-root": f"{root}/r",
                                             "insecure-registries": insecure, **(settings or {})}))
        try:
            return await work(kernel)
        finally:
            await kernel.stop()

    with tempfile.TemporaryDirectory(prefix="dockyard-trust-") as root:
        try:
            return asyncio.run(main(root))
        except DockyardError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group()
def trust() -> None:
    """Sign images and verify their signatures (cosign's key-pair format and registry layout)."""


@trust.group()
def key() -> None:
    """Manage signing keys (NAME.key encrypted with a passphrase, NAME.pub)."""


@key.command("generate")
@click.option("--output-key-prefix", default="cosign", show_default=True, help="write PREFIX.key and PREFIX.pub")
@click.option("--force", is_flag=True, help="overwrite existing files")
def key_generate(output_key_prefix: str, force: bool) -> None:
    """Generate an ECDSA P-256 key pair (passphrase from COSIGN_PASSWORD or a prompt)."""
    from dockyard_provenance import keys as k

    secret = k.passphrase(prompt=sys.stdin.isatty(), confirm=True)
    try:
        key_path, pub_path = k.write_pair(Path(output_key_prefix), k.generate(), secret, force)
    except k.KeyError_ as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Private key written to {key_path}")
    click.echo(f"Public key written to {pub_path}")


@key.command("import")
@click.argument("pem", type=click.Path(exists=True, dir_okay=False))
@click.option("--output-key-prefix", default="import-cosign", show_default=True)
@click.option("--force", is_flag=True)
def key_import(pem: str, output_key_prefix: str, force: bool) -> None:
    """Import a PEM ECDSA P-256 private key (PKCS#8 or SEC1, unencrypted or PEM-encrypted
    with the same passphrase) into cosign's format."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from dockyard_provenance import keys as k

    data = Path(pem).read_bytes()
    secret = k.passphrase(prompt=sys.stdin.isatty(), confirm=False)
    try:
        try:
            priv = serialization.load_pem_private_key(data, password=None)
        except TypeError:
            priv = serialization.load_pem_private_key(data, password=secret)
    except ValueError as exc:
        raise click.ClickException(f"{pem}: not a PEM private key: {exc}") from exc
    if not isinstance(priv, ec.EllipticCurvePrivateKey) or priv.curve.name != "secp256r1":
        raise click.ClickException(f"{pem}: only ECDSA P-256 keys are supported")
    try:
        key_path, pub_path = k.write_pair(Path(output_key_prefix), k.KeyPair(priv), secret, force)
    except k.KeyError_ as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Private key written to {key_path}")
    click.echo(f"Public key written to {pub_path}")


@key.command("list")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
def key_list(directory: str) -> None:
    """The key pairs in DIRECTORY (default: here): name, key id, whether the private half is there."""
    from dockyard_provenance import keys as k

    rows = []
    for pub in sorted(Path(directory).glob("*.pub")):
        try:
            kid = k.key_id(k.load_public(pub.read_bytes(), str(pub)))
        except k.KeyError_:
            continue
        rows.append((pub.stem, kid, "yes" if pub.with_suffix(".key").exists() else "no"))
    click.echo(f"{'NAME':<24}{'KEY ID':<20}PRIVATE")
    for name, kid, has in rows:
        click.echo(f"{name:<24}{kid:<20}{has}")


@trust.command("sign")
@click.argument("image")
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="cosign private key (NAME.key)")
@click.option("-a", "--annotation", multiple=True, help="KEY=VALUE added to the payload's optional section")
def sign(image: str, key_path: str, annotation: tuple[str, ...]) -> None:
    """Sign IMAGE's manifest digest (an index's for a multi-platform image) and push the
    signature beside it (tag sha256-<digest>.sig)."""
    from dockyard_provenance import cosign
    from dockyard_provenance import keys as k

    secret = k.passphrase(prompt=sys.stdin.isatty())
    try:
        priv = k.decrypt_private(Path(key_path).read_bytes(), secret, key_path)
    except k.KeyError_ as exc:
        raise click.ClickException(str(exc)) from exc
    extra = dict(a.split("=", 1) for a in annotation if "=" in a)

    async def work(kernel: Any) -> tuple[str, str]:
        ref = cosign.parse(image)
        session = cosign.open_session(kernel, ref)
        try:
            digest = await cosign.resolve(session, ref)
            payload = cosign.make_payload(cosign.identity_of(ref), digest)
            if extra:
                doc = json.loads(payload)
                doc["optional"].update(extra)
                payload = json.dumps(doc, separators=(",", ":")).encode()
            sig = cosign.Signature(payload, k.sign(priv, payload))
            where = await cosign.attach(session, ref.path, digest, sig)
            return digest, where
        finally:
            await session.close()

    digest, where = _run(work)
    click.echo(f"Signed {image} ({digest}); signature manifest {where}")


@trust.command("verify")
@click.argument("image")
@click.option("--key", "key_paths", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="public key (NAME.pub); repeat for several")
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False),
              help="judge IMAGE by a policy file (containers-policy.json shape) as the daemon would on pull")
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
def verify(image: str, key_paths: tuple[str, ...], policy_path: str | None, output: str) -> None:
    """Verify IMAGE's signatures with the given public keys (exit 1 unless one verifies), or
    judge it by a policy file (--policy)."""
    from dockyard_provenance import cosign
    from dockyard_provenance import keys as k

    if policy_path:
        _verify_by_policy(image, policy_path)
        if not key_paths:
            return
    elif not key_paths:
        raise click.UsageError("give --key PUB (repeatable) or --policy FILE")
    try:
        pubs = [k.load_public(Path(p).read_bytes(), p) for p in key_paths]
    except k.KeyError_ as exc:
        raise click.ClickException(str(exc)) from exc

    async def work(kernel: Any) -> cosign.Verdict:
        ref = cosign.parse(image)
        session = cosign.open_session(kernel, ref)
        try:
            digest = await cosign.resolve(session, ref)
            return cosign.verify(await cosign.fetch(session, ref.path, digest), pubs, digest)
        finally:
            await session.close()

    v = _run(work)
    if output == "json":
        click.echo(json.dumps([json.loads(s.payload) for s, _kid in v.good], indent=2))
    if not v.good:
        why = "; ".join(v.problems) or "no signatures found"
        raise click.ClickException(f"{image} ({v.digest}): no valid signature: {why}")
    if output == "text":
        click.echo(f"Verification for {image} ({v.digest}): {len(v.good)} of {v.count} signature(s) "
                   f"valid (keys {', '.join(sorted({kid for _s, kid in v.good}))})")


def _verify_by_policy(image: str, policy_path: str) -> None:
    from dockyard.specs.storage import ImageCheck
    from dockyard_provenance import cosign
    from dockyard_provenance.policy import FilePolicy, PolicyError

    async def work(kernel: Any) -> str:
        ref = cosign.parse(image)
        session = cosign.open_session(kernel, ref)
        try:
            digest = await cosign.resolve(session, ref)
        finally:
            await session.close()
        await FilePolicy().check(kernel, ImageCheck(cosign.identity_of(ref), digest, "pull"))
        return digest

    try:
        digest = _run(work, {"trust-policy": str(Path(policy_path).resolve())})
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Policy {policy_path} admits {image} ({digest})")


@trust.command("inspect")
@click.argument("image")
@click.option("--attestations", is_flag=True, help="also the attestations beside IMAGE (cosign's .att: "
              "in-toto statements in DSSE envelopes), verified with each --key")
@click.option("--key", "keys", multiple=True, help="public key (PEM) verifying attestations (repeatable)")
def inspect(image: str, attestations: bool, keys: tuple[str, ...]) -> None:
    """The signatures stored beside IMAGE (payload claims and annotations), unverified, as JSON."""
    from dockyard_provenance import cosign

    async def work(kernel: Any) -> dict[str, Any]:
        ref = cosign.parse(image)
        session = cosign.open_session(kernel, ref)
        atts: list[dict[str, Any]] = []
        try:
            digest = await cosign.resolve(session, ref)
            sigs = await cosign.fetch(session, ref.path, digest)
            if attestations:
                from pathlib import Path

                from cryptography.hazmat.primitives import serialization

                from dockyard_provenance import attest

                pubs = [serialization.load_pem_public_key(Path(k).read_bytes()) for k in keys]
                atts = [attest.describe(env, pubs, digest) for env in await attest.fetch(session, ref.path, digest)]
        finally:
            await session.close()
        out = []
        for s in sigs:
            try:
                claims: dict[str, Any] = s.claims()
            except Exception as exc:  # noqa: BLE001 - shown, not trusted
                claims = {"error": str(exc)}
            out.append({"Layer": s.layer_digest, "Signature": s.signature, "Claims": claims,
                        "Annotations": s.annotations})
        doc = {"Name": image, "Digest": digest, "SignatureTag": cosign.sig_tag(digest), "Signatures": out}
        if attestations:
            from dockyard_provenance.attest import att_tag

            doc["AttestationTag"] = att_tag(digest)
            doc["Attestations"] = atts
        return doc

    click.echo(json.dumps([_run(work)], indent=2))
