"""Registry credentials: ``WWW-Authenticate`` challenges, the ``X-Registry-Auth`` header, and
the CLI's ``config.json`` ``auths`` store."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import InvalidArgument


@dataclass(frozen=True)
class AuthConfig:
    """What the docker CLI sends base64url-encoded in ``X-Registry-Auth`` and to ``POST /auth``."""

    username: str = ""
    password: str = ""
    serveraddress: str = ""
    identitytoken: str = ""  # an OAuth2 refresh token (from a previous login)
    registrytoken: str = ""  # a bearer token to send as is

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identitytoken or self.registrytoken)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuthConfig:
        if not isinstance(data, dict):
            raise InvalidArgument("registry auth: expected a JSON object")
        low = {str(k).lower(): v for k, v in data.items()}
        username, password = str(low.get("username") or ""), str(low.get("password") or "")
        if low.get("auth") and not username:  # config.json style "auth": base64("user:pass")
            try:
                username, _, password = base64.b64decode(str(low["auth"])).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise InvalidArgument(f"registry auth: invalid 'auth' field: {exc}") from exc
        return cls(username=username, password=password,
                   serveraddress=str(low.get("serveraddress") or ""),
                   identitytoken=str(low.get("identitytoken") or ""),
                   registrytoken=str(low.get("registrytoken") or ""))

    def to_header(self) -> str:
        """The ``X-Registry-Auth`` value (base64url JSON, as the docker CLI sends it)."""
        data = {"username": self.username, "password": self.password,
                "serveraddress": self.serveraddress}
        if self.identitytoken:
            data["identitytoken"] = self.identitytoken
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


def decode_registry_auth(header: str | None) -> AuthConfig | None:
    """Decode an ``X-Registry-Auth`` header. ``e30=`` (``{}``) and absence mean no credentials.

    The CLI uses URL-safe base64 with padding; some clients send standard base64 or drop the
    padding, so both alphabets are accepted. A malformed header is InvalidArgument (dockerd
    answers 400 too).
    """
    if header is None or not header.strip():
        return None
    raw = header.strip()
    raw += "=" * (-len(raw) % 4)
    try:
        text = base64.b64decode(raw.replace("-", "+").replace("_", "/"), validate=True)
        data = json.loads(text)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(f"invalid X-Registry-Auth header: {exc}") from exc
    cfg = AuthConfig.from_dict(data)
    return None if cfg.empty else cfg


# ---------------------------------------------------------------------------------------------
# WWW-Authenticate challenges (RFC 7235): ``Bearer realm="...",service="...",scope="..."``

@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})")
_PARAM_RE = re.compile(rf"\s*({_TOKEN})\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|({_TOKEN}))")
_TOKEN68_RE = re.compile(r"\s*([A-Za-z0-9\-._~+/]+=*)\s*(?:,|$)")


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge of a ``WWW-Authenticate`` header, in order.

    Handles quoted strings with escapes and commas inside quotes, several challenges in one
    header, and token68 values (kept under the empty key).
    """
    out: list[Challenge] = []
    pos, n = 0, len(header)
    while pos < n:
        while pos < n and header[pos] in " ,\t":
            pos += 1
        if pos >= n:
            break
        m = _SCHEME_RE.match(header, pos)
        if not m:
            break
        scheme, pos = m.group(1).lower(), m.end()
        params: dict[str, str] = {}
        while pos < n:
            pm = _PARAM_RE.match(header, pos)
            if pm:
                value = pm.group(2) if pm.group(2) is not None else pm.group(3)
                if pm.group(2) is not None:
                    value = re.sub(r"\\(.)", r"\1", value)
                params[pm.group(1).lower()] = value
                pos = pm.end()
                while pos < n and header[pos] in " \t":
                    pos += 1
                if pos < n and header[pos] == ",":
                    pos += 1
                    continue
                break
            if not params:  # token68 (``Basic abc==``), else the next challenge starts here
                t = _TOKEN68_RE.match(header, pos)
                if t:
                    params[""] = t.group(1)
                    pos = t.end()
            break
        out.append(Challenge(scheme, params))
    return out


def scope_for(repository: str, actions: str) -> str:
    return f"repository:{repository}:{actions}"


# ---------------------------------------------------------------------------------------------
# The CLI's credential file: ``~/.dockyard/config.json`` in docker's ``auths`` shape.

def config_dir() -> Path:
    return Path(os.environ.get("DOCKYARD_CONFIG") or Path.home() / ".dockyard")


def _config_path() -> Path:
    return config_dir() / "config.json"


def load_cli_config() -> dict[str, Any]:
    path = _config_path()
    try:
        data = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise InvalidArgument(f"{path}: invalid JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}


def save_credentials(server: str, username: str, password: str = "", identitytoken: str = "") -> Path:
    """Store credentials for ``server`` (file mode 0600, written atomically)."""
    path = _config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = load_cli_config()
    entry: dict[str, str] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    if identitytoken:
        entry = {"auth": base64.b64encode(f"{username}:".encode()).decode(), "identitytoken": identitytoken}
    data.setdefault("auths", {})[server] = entry
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent="\t")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def remove_credentials(server: str) -> bool:
    data = load_cli_config()
    if server not in (data.get("auths") or {}):
        return False
    del data["auths"][server]
    path = _config_path()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent="\t")
    return True


def credentials_for(server: str) -> AuthConfig | None:
    """Stored credentials for registry ``server`` (``host[:port]``), or None."""
    auths = load_cli_config().get("auths") or {}
    for key in (server, f"https://{server}", f"http://{server}"):
        if key in auths:
            cfg = AuthConfig.from_dict(auths[key])
            return AuthConfig(cfg.username, cfg.password, server, cfg.identitytoken)
    return None
