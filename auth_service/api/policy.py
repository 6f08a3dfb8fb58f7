"""Caller policy: which calling service may call which group of RPCs.

Every RPC of ``woes.auth.v1.AuthService`` belongs to one group:

| group | RPCs |
| --- | --- |
| ``verify`` | ``Authenticate``, ``VerifyWidgetKey`` and any ``Verify*`` RPC |
| ``lab_reveal`` | any RPC whose name contains ``Reveal`` (revealing an API test credential) |
| ``widget_secrets`` | ``IssueConversationSecret`` (the widget backend) |
| ``admin`` | every other RPC (issue, rotate, revoke, get, list, audit, ...) |

A new RPC therefore falls into ``admin`` unless it is named as a verification:
an RPC nobody thought about is closed by default. The health and reflection
services are not groups: any caller that passed the transport may call them.

The caller's identity is:

* with mTLS, the service name in its client certificate's SAN URI
  ``spiffe://woes/service/<name>`` (``unnamed`` for a certificate without one);
* without TLS (plaintext, loopback only unless explicitly allowed), ``anonymous``;
* in both cases, if the caller's certificate identity is not allowed, a valid
  admin credential in ``authorization: Bearer ...`` makes it ``key:<key id>``
  for policies that name such identities (for internal tools without a
  certificate of their own).

The policy file (``WOES_AUTH_POLICY_FILE``, ``.json`` or ``.toml``)::

    default = ["verify"]            # groups of any caller not named below

    [callers]
    gateway = ["verify"]
    admin-tool = ["verify", "admin"]
    lab-runner = ["lab_reveal"]
    widget-backend = ["verify", "widget_secrets"]
    "key:AbCdEfGhIjKl" = ["admin"]

    throttled = ["lab-runner"]      # callers whose failed authentications are their own

``throttled`` lists the callers whose failed authentications are charged to a
bucket of their own (``WOES_AUTH_THROTTLE_CALLER``; see :mod:`auth_service.api.throttle`):
only callers that authenticate their own credentials, never a gateway that
forwards its users' (one user's failures would lock every user out).
``anonymous`` there throttles plaintext callers, each by its address. No caller
is throttled by default.

Without a policy file the defaults are least privilege:

* mTLS: every caller with a valid certificate may ``verify``; nothing else.
  Admin tools, the lab runner and the widget backend must be named in a
  policy file.
* plaintext on loopback (development): callers cannot be told apart, so
  ``anonymous`` may call every group; each admin and internal RPC still needs
  its own credential (an admin credential; an internal credential holding the
  RPC's permission). A policy file narrows this (e.g.
  ``callers.anonymous = ["verify"]``).

A refused call gets ``PERMISSION_DENIED`` with reason ``CALLER_NOT_ALLOWED``
and writes an audit event (at most one per caller, group and minute, with the
number of refusals in between, so that a refused caller cannot fill the
database).
"""

from __future__ import annotations

import json
import threading
import time
import tomllib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from auth_service.domain.errors import ConfigError

VERIFY = "verify"
ADMIN = "admin"
LAB_REVEAL = "lab_reveal"
WIDGET_SECRETS = "widget_secrets"
GROUPS = (VERIFY, ADMIN, LAB_REVEAL, WIDGET_SECRETS)
ANONYMOUS = "anonymous"
KEY_PREFIX = "key:"

_VERIFY_RPCS = frozenset({"Authenticate", "VerifyWidgetKey"})
_WIDGET_SECRETS_RPCS = frozenset({"IssueConversationSecret"})


def group_of(method_name: str) -> str:
    """The RPC group of an AuthService method name (e.g. ``IssueKey`` -> ``admin``)."""
    if method_name in _VERIFY_RPCS or method_name.startswith("Verify"):
        return VERIFY
    if "Reveal" in method_name:
        return LAB_REVEAL
    if method_name in _WIDGET_SECRETS_RPCS:
        return WIDGET_SECRETS
    return ADMIN


@dataclass(frozen=True)
class Policy:
    default: frozenset[str]
    callers: dict[str, frozenset[str]] = field(default_factory=dict)
    source: str = "built-in"
    throttled: frozenset[str] = frozenset()

    def groups_for(self, identity: str) -> frozenset[str]:
        groups = self.callers.get(identity)
        return self.default if groups is None else groups

    def allows(self, identity: str, group: str) -> bool:
        return group in self.groups_for(identity)

    @property
    def names_keys(self) -> bool:
        """Whether some caller is named by an admin credential's key id."""
        return any(name.startswith(KEY_PREFIX) for name in self.callers)

    def describe(self) -> str:
        named = ", ".join(f"{name}={'+'.join(sorted(g)) or '-'}" for name, g in sorted(self.callers.items()))
        return (
            f"policy {self.source}: default={'+'.join(sorted(self.default)) or '-'}"
            + (f"; {named}" if named else "")
            + (f"; throttled={','.join(sorted(self.throttled))}" if self.throttled else "")
        )


def default_policy(tls: bool) -> Policy:
    if tls:
        return Policy(frozenset({VERIFY}), {}, "built-in (mTLS: every certified caller may verify)")
    return Policy(
        frozenset(),
        {ANONYMOUS: frozenset(GROUPS)},
        "built-in (plaintext loopback: callers are anonymous; RPC credentials decide)",
    )


def _groups(value, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise ConfigError(f"policy: {where} must be a list of group names")
    unknown = sorted(set(value) - set(GROUPS))
    if unknown:
        raise ConfigError(f"policy: {where} names unknown groups {unknown}; groups are {list(GROUPS)}")
    return frozenset(value)


def parse_policy(data: dict, source: str) -> Policy:
    if not isinstance(data, dict):
        raise ConfigError("policy: the document must be a table/object")
    extra = sorted(set(data) - {"default", "callers", "throttled"})
    if extra:
        raise ConfigError(f"policy: unknown keys {extra}; expected 'default', 'callers' and 'throttled'")
    throttled = data.get("throttled", [])
    if not isinstance(throttled, list) or not all(isinstance(n, str) and 0 < len(n) <= 80 for n in throttled):
        raise ConfigError("policy: throttled must be a list of caller names of 1 to 80 characters")
    default = _groups(data.get("default", []), "default")
    callers_raw = data.get("callers", {})
    if not isinstance(callers_raw, dict):
        raise ConfigError("policy: callers must be a table/object of name = [groups]")
    callers = {}
    for name, groups in callers_raw.items():
        if not isinstance(name, str) or not name or len(name) > 80:
            raise ConfigError("policy: caller names are 1 to 80 characters")
        callers[name] = _groups(groups, f"callers.{name}")
    return Policy(default, callers, source, frozenset(throttled))


def load_policy(path: str | None, tls: bool) -> Policy:
    """The policy of ``path`` (JSON or TOML by extension), or the built-in default."""
    if not path:
        return default_policy(tls)
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the policy file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"the policy file {path} is not valid {p.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    return parse_policy(data, f"file {path}")


class DenialSampler:
    """Decides which refusals become audit rows: one per (caller, group) per ``interval``, bounded."""

    def __init__(self, interval: float = 60.0, max_entries: int = 10_000):
        self.interval = interval
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()

    def admit(self, caller: str, group: str, now: float | None = None) -> int | None:
        """``None`` to skip; otherwise the number of refusals suppressed since the last row."""
        now = time.monotonic() if now is None else now
        key = (caller, group)
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last[0] < self.interval:
                self._seen[key] = (last[0], last[1] + 1)
                return None
            self._seen[key] = (now, 0)
            self._seen.move_to_end(key)
            while len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
            return 0 if last is None else last[1]
