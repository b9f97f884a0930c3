"""The build record: what went into an image, kept with it (``Image.build_record``).

Shaped like SLSA provenance v1's predicate so that the provenance plugin can sign it as is:

- ``buildDefinition.buildType``: this builder's classic Dockerfile build;
- ``buildDefinition.externalParameters``: what the caller chose: the Dockerfile (path and
  SHA-256), the context (the digest of its whole tree, as the cache keys hash it), build args, labels, target, tags, platform, ``--no-cache``;
- ``buildDefinition.internalParameters``: what the builder chose (RUN's network mode, whether
  ``.dockerignore`` applied);
- ``buildDefinition.resolvedDependencies``: ResourceDescriptors for every base image
  (``docker-image://...`` with the image ID as digest), every context file a COPY/ADD took
  (``context:<path>`` with the SHA-256 of its content) and every ``--from`` stage or image;
- ``runDetails``: builder versions, invocation ID, start and end, the image as byproduct;
- ``steps``: each step's line, instruction, resulting image ID and whether the cache answered.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from dockyard import __version__ as core_version
from dockyard.model import now_iso
from dockyard.reference import parse_normalized
from dockyard_builder import __version__

BUILD_TYPE = "https://dockyard.dev/builder/classic-dockerfile@v1"
RECORD_TYPE = "https://dockyard.dev/build-record/v1"


def digest_obj(digest: str) -> dict[str, str]:
    """``sha256:abc`` as a ResourceDescriptor digest (``{"sha256": "abc"}``)."""
    algo, _, hexpart = digest.partition(":")
    return {algo or "sha256": hexpart}


@dataclass
class BuildRecorder:
    started: str = field(default_factory=now_iso)
    dependencies: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def dependency(self, uri: str, digest: str, annotations: dict[str, str]) -> None:
        """Add a resolved dependency once per (uri, digest)."""
        key = (uri, digest)
        if key in self._seen:
            return
        self._seen.add(key)
        dep: dict[str, Any] = {"uri": uri, "annotations": dict(annotations)}
        if digest:
            dep["digest"] = digest_obj(digest)
        self.dependencies.append(dep)

    def step(self, number: int, stage: str, line: int, instruction: str, image_id: str, cached: bool) -> None:
        self.steps.append({"step": number, "stage": stage, "line": line, "instruction": instruction,
                           "imageId": image_id, "cached": cached})

    def record(self, *, image_id: str, dockerfile_name: str, dockerfile_text: str, build_args: dict[str, Any],
               labels: dict[str, str], target: str, tags: list[str], platform: str, no_cache: bool,
               network_mode: str, dockerignore: bool, context_digest: str = "") -> dict[str, Any]:
        df_digest = "sha256:" + hashlib.sha256(dockerfile_text.encode()).hexdigest()
        return {
            "_type": RECORD_TYPE,
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "dockerfile": {"path": dockerfile_name, "digest": digest_obj(df_digest)},
                    **({"context": {"digest": digest_obj(context_digest)}} if context_digest else {}),
                    "buildArgs": dict(sorted(build_args.items())),
                    "labels": dict(sorted(labels.items())),
                    "target": target,
                    "tags": [str(parse_normalized(t)) for t in tags],
                    "platform": platform,
                    "noCache": no_cache,
                },
                "internalParameters": {"networkMode": network_mode, "dockerignore": dockerignore},
                "resolvedDependencies": list(self.dependencies),
            },
            "runDetails": {
                "builder": {"id": "https://dockyard.dev/builder",
                            "version": {"dockyard-builder": __version__, "dockyard-core": core_version}},
                "metadata": {"invocationId": secrets.token_hex(16), "startedOn": self.started,
                             "finishedOn": now_iso()},
                "byproducts": [{"name": "image", "digest": digest_obj(image_id)}],
            },
            "steps": list(self.steps),
        }
