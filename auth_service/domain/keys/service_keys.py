"""The service's own credentials: admin keys and internal credentials.

* An admin credential (``woes_ak_``) calls the admin RPCs and holds no internal permission.
* An internal credential (``woes_ik_``) holds one or more internal permissions
  (:mod:`auth_service.domain.permissions`) and calls exactly the RPCs they name: no admin RPC
  (:meth:`CredentialManager.authenticate_admin` refuses its kind), no public API
  (``Authenticate`` and ``VerifyWidgetKey`` refuse its kind).

Both belong to no workspace. They are created (``bootstrap-admin``, ``bootstrap-internal``),
listed with their permissions and rotated (``service-keys list|rotate``) only by the
``woes-auth`` commands with direct access to the database and the pepper. Through the API an
admin may revoke them (taking power away) and see one's state by its id, never its permissions;
``Rotate`` refuses them, so a stolen credential cannot mint a successor that outlives its
revocation.
"""

from __future__ import annotations

import time
from datetime import timedelta

from auth_service.domain import permissions as permission_registry
from auth_service.domain.errors import InternalCredentialRequired, PermissionRequired, Violations
from auth_service.domain.keys.manager import CredentialManager
from auth_service.domain.keys.records import KeyRecord, Principal
from auth_service.domain.keys.rules import Issued
from auth_service.domain.ports import KeyStore
from auth_service.domain.tokens import KeyKind


def authenticate_internal(
    manager: CredentialManager, bearer: str | None, permission: str, *, check_permission: bool = True
) -> Principal:
    """The principal of the internal credential ``bearer`` (from ``authorization: Bearer``), live
    now, for an RPC that needs ``permission``.

    * no credential: ``UNAUTHENTICATED`` / ``INTERNAL_CREDENTIAL_REQUIRED``;
    * malformed, unknown, revoked, expired: ``UNAUTHENTICATED`` with the usual reason;
    * a credential of another kind, an admin credential included: ``PERMISSION_DENIED`` /
      ``INTERNAL_PERMISSION_REQUIRED`` (decided from its prefix, without a store read: no other
      kind ever holds an internal permission);
    * an internal credential that does not hold ``permission``: the same refusal, unless
      ``check_permission`` is false (the reveal checks it itself, to audit the refusal)."""
    if not bearer:
        raise InternalCredentialRequired(
            "this RPC needs 'authorization: Bearer <internal credential>' metadata "
            f"(a woes_ik_ credential holding {permission!r}, made by 'woes-auth bootstrap-internal')",
            metadata={"permission": permission},
        )
    cred = manager.parse(bearer)
    if cred.kind is not KeyKind.INTERNAL:
        raise PermissionRequired(permission, kind=cred.kind.value)
    entry = manager.lookup(cred)
    manager.check_live(entry, time.time())
    if check_permission and permission not in entry.principal.scopes:
        raise PermissionRequired(permission)
    return entry.principal


def _check_permissions(permissions: tuple[str, ...]) -> None:
    v = Violations()
    if not permissions:
        v.add("permissions", "at least one internal permission: " + ", ".join(sorted(permission_registry.RPC_OF)))
    unknown = permission_registry.unknown(permissions)
    if unknown:
        v.add(
            "permissions",
            "unknown internal permissions: "
            + ", ".join(repr(p[:64]) for p in unknown[:5])
            + "; known: "
            + ", ".join(sorted(permission_registry.RPC_OF)),
        )
    v.raise_if_any()


def bootstrap_internal(
    manager: CredentialManager, display_name: str, permissions: tuple[str, ...], actor: str = "bootstrap-internal"
) -> Issued:
    """A new internal credential holding ``permissions`` (at least one, each known), audited as
    ``internal.bootstrap``. For the local command with database access only."""
    _check_permissions(permissions)
    return manager.bootstrap_service_key(KeyKind.INTERNAL, display_name, permissions, actor, "internal.bootstrap")


def rotate_service_key(
    manager: CredentialManager, key_id: str, grace: timedelta, actor: str = "cli:service-keys-rotate"
) -> tuple[Issued, KeyRecord]:
    """Replace an admin or internal key by a new one of the same kind, name and permissions; the old
    one works for ``grace`` (0: it stops at once). Audited as ``service_key.rotate``. For the local
    command with database access only: the ``Rotate`` RPC refuses service keys."""
    return manager.rotate(actor, key_id, grace, service_keys=True)


def list_service_keys(store: KeyStore) -> list[KeyRecord]:
    """Every admin and internal key with its permissions, newest first (the local command's view)."""
    return store.list_keys("", 1_000_000, None, kinds=(KeyKind.ADMIN, KeyKind.INTERNAL))
