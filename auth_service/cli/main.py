"""The ``woes-auth`` command.

    woes-auth serve              run the service                                  (serve.py)
    woes-auth bootstrap-admin    create an admin credential (printed once, last line of stdout)
    woes-auth db upgrade|status  apply the schema migrations / show the schema revision
    woes-auth keys issue|list|get|rotate|revoke
                                 workspace keys over gRPC against a running server  (keys.py)
    woes-auth conversations | test-credentials | audit | workspace-settings ...
                                 the other RPCs against a running server
    woes-auth kek status|new-key|rotate
                                 key-encryption keys of test credentials          (kek.py)
    woes-auth bootstrap-internal | service-keys list|rotate
                                 the service's own credentials                    (service_keys.py)
    woes-auth dev-certs --out DIR
                                 development CA, server and client certificates for mTLS

Admin commands read the admin credential (internal RPCs: the internal one) from
``WOES_AUTH_{ADMIN,INTERNAL}_CREDENTIAL`` or ``--{admin,internal}-credential-file``,
never from a flag value (flags end up in shell history and process lists).
"""

from __future__ import annotations

import argparse
import sys

from auth_service.cli import audit, conversations, dev_certs, kek, keys, serve, service_keys, test_credentials
from auth_service.domain.errors import ConfigError

# The command groups, in the order ``woes-auth --help`` lists them.
GROUPS = (serve, keys, conversations, test_credentials, audit, kek, service_keys, dev_certs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="woes-auth", description="The Woes credential service.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"woes-auth: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
