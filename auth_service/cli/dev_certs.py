"""``woes-auth dev-certs``: a development CA, server and client certificates for mTLS."""

from __future__ import annotations

import argparse
from pathlib import Path

from auth_service.domain.errors import ConfigError


def cmd_dev_certs(args: argparse.Namespace) -> int:
    from auth_service.api.tls import DEFAULT_CLIENTS, write_dev_certs

    clients = args.client or list(DEFAULT_CLIENTS)
    try:
        written = write_dev_certs(Path(args.out), clients)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    out = Path(args.out)
    print(f"Development certificates in {out} (keys are 0600; for development and tests only):")
    for role, path in written.items():
        print(f"  {role:<24} {path.name}")
    print("Serve with mTLS:")
    print(
        f"  WOES_AUTH_TLS_CERT={out / 'server.pem'} WOES_AUTH_TLS_KEY={out / 'server-key.pem'} "
        f"WOES_AUTH_TLS_CLIENT_CA={out / 'ca.pem'} woes-auth serve"
    )
    print("Client certificates name their service in a URI SAN spiffe://woes/service/<name> (the only SAN read).")
    return 0


def add_commands(sub) -> None:
    certs = sub.add_parser("dev-certs", help="write a development CA, server and client certificates (mTLS)")
    certs.add_argument("--out", required=True, help="folder to write the PEM files to")
    certs.add_argument(
        "--client",
        action="append",
        help="service name of a client certificate (repeatable; default gateway, admin-tool, lab-runner)",
    )
    certs.set_defaults(func=cmd_dev_certs)
