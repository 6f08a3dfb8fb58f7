"""The authorization matrix of ``docs/security.md``, run cell by cell against real servers.

Both tables are read from the documentation: every cell of the credentials table is called on a
plaintext ``woes-auth serve`` with the built-in policy, every cell of the callers table on an mTLS
one with the policy the documentation states (the ``plaintext anonymous`` column on the plaintext
one), and each answer must be the cell's outcome, with the status code its legend gives the reason.
Guards keep the tables whole (a row for every RPC of the service and Envoy's ``Check``, no RPC or
column that does not exist, each legend as the contract states it) and keep them to the design: a
table edited to match a server that broke a rule of the design fails here too.
"""

from __future__ import annotations

import re
import tomllib

import pytest
from envoy.service.auth.v3 import external_auth_pb2 as ext
from woes.auth.v1 import auth_service_pb2 as pb

from tests.support.matrix_doc import CALLERS_TABLE, CREDENTIALS_TABLE, DOC, DocTable, doc_policy, doc_table
from tests.support.matrix_helpers import (
    CALLER_COLUMNS,
    CREDENTIAL_COLUMNS,
    ENVOY_CHECK,
    RPCS,
    TLS_HANDSHAKE,
    call,
    proper,
)
from tests.support.matrix_servers import caller_channels, mtls_server, plaintext_server
from tests.support.paths import ROOT

TEXT = DOC.read_text()
CREDENTIALS = doc_table(TEXT, CREDENTIALS_TABLE)
CALLERS = doc_table(TEXT, CALLERS_TABLE)
ERRORS_PROTO = ROOT / "protos" / "woes" / "auth" / "v1" / "errors.proto"

KNOWN_DEFECTS: dict[tuple[str, str, str], str] = {}
"""(table, RPC, column) -> the defect that makes the server answer otherwise than the cell, which
states the outcome that must hold. Such a cell runs as a strict xfail: fixing the defect fails it
until the entry goes."""


# -- servers ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    with plaintext_server(tmp_path_factory.mktemp("matrix-plain")) as served:
        yield served


@pytest.fixture(scope="module")
def mtls(tmp_path_factory):
    policy = doc_policy(TEXT)
    assert policy, f"the callers table of {DOC.name} states no test policy (a ```toml block)"
    with mtls_server(tmp_path_factory.mktemp("matrix-mtls"), policy) as served:
        yield served


@pytest.fixture(scope="module")
def callers(mtls, tmp_path_factory):
    with caller_channels(mtls.port, tmp_path_factory.mktemp("matrix-certs")) as channels:
        yield channels


# -- every cell -------------------------------------------------------------------------------------


def _cells(name: str, table: DocTable, columns: tuple[str, ...]) -> list:
    out = []
    for rpc, row in table.rows.items():
        for column, expected in row.items():
            if rpc not in RPCS or column not in columns:
                continue  # the guards below name it
            defect = KNOWN_DEFECTS.get((name, rpc, column))
            marks = [pytest.mark.xfail(strict=True, reason=defect)] if defect else []
            out.append(pytest.param(rpc, column, expected, id=f"{rpc.rsplit('/', 1)[-1]}-{column}", marks=marks))
    return out


def _expect(table: DocTable, outcome, expected: str) -> None:
    code = "OK" if expected == "OK" else table.legend.get(expected, f"(no legend entry for {expected})")
    assert (outcome.result, outcome.code) == (expected, code)


@pytest.mark.parametrize(("rpc", "column", "expected"), _cells("credentials", CREDENTIALS, CREDENTIAL_COLUMNS))
def test_credentials_cell(plain, rpc, column, expected):
    _expect(CREDENTIALS, call(plain.world, plain.channel, rpc, plain.world.credentials[column]), expected)


@pytest.mark.parametrize(("rpc", "column", "expected"), _cells("callers", CALLERS, CALLER_COLUMNS))
def test_callers_cell(plain, mtls, callers, rpc, column, expected):
    if column == "plaintext anonymous":
        served, channel = plain, plain.channel
    else:
        served, channel = mtls, callers[column]
    _expect(CALLERS, call(served.world, channel, rpc, served.world.credentials[proper(rpc)]), expected)


# -- the tables are whole ---------------------------------------------------------------------------


def test_every_rpc_has_a_row_and_every_row_and_column_exists():
    service = pb.DESCRIPTOR.services_by_name["AuthService"]
    envoy = ext.DESCRIPTOR.services_by_name["Authorization"]
    rpcs = [m.name for m in service.methods] + [f"{envoy.full_name}/{envoy.methods_by_name['Check'].name}"]
    assert list(RPCS) == rpcs
    for name, table, columns in (
        ("credentials", CREDENTIALS, CREDENTIAL_COLUMNS),
        ("callers", CALLERS, CALLER_COLUMNS),
    ):
        assert table.rows, f"no {name} table under its heading in {DOC.name}"
        missing, unknown = set(rpcs) - set(table.rows), set(table.rows) - set(rpcs)
        assert not missing, f"RPCs without a row in the {name} table: {sorted(missing)}"
        assert not unknown, f"the {name} table names RPCs that do not exist: {sorted(unknown)}"
        assert table.columns == columns, f"the {name} table's columns are not {columns}"
        for rpc, row in table.rows.items():
            assert len(row) == len(columns) and all(row.values()), f"{rpc}: a cell is missing"


def _contract_codes() -> dict[str, str]:
    """Each reason of ``errors.proto`` and the status code its comment opens with."""
    found = {}
    block = re.compile(r"((?:[ \t]*//[^\n]*\n)+)[ \t]*ERROR_REASON_([A-Z_]+) = \d+;")
    for comment, reason in block.findall(ERRORS_PROTO.read_text()):
        first = comment.strip().splitlines()[0].strip("/ ")
        code = re.match(r"([A-Z_]+):", first)
        if code:
            found[reason] = code.group(1)
    return found


def test_each_legend_gives_every_reason_of_its_table_the_code_of_the_contract():
    contract = _contract_codes()
    assert contract["CREDENTIAL_REVOKED"] == "UNAUTHENTICATED"  # the contract was read
    for table in (CREDENTIALS, CALLERS):
        used = {cell for row in table.rows.values() for cell in row.values()} - {"OK"}
        assert set(table.legend) == used, "a legend lists exactly the reasons of its table"
        for reason, code in table.legend.items():
            assert code == ("UNAVAILABLE" if reason == TLS_HANDSHAKE else contract.get(reason)), reason


# -- the tables keep the design ---------------------------------------------------------------------

ADMIN_RPCS = {r for r in RPCS if proper(r) == "admin"}


def _ok_rpcs(table: DocTable, column: str) -> set[str]:
    return {rpc for rpc, row in table.rows.items() if row.get(column) == "OK"}


def test_each_credential_opens_exactly_what_the_design_gives_it():
    """DESIGN §1 and §5: a widget key never unlocks the API; a conversation secret opens nothing
    else; an internal credential calls exactly the RPC its permission names and no admin RPC; no
    admin RPC succeeds without an admin credential; revoked, expired and past-grace credentials
    get nothing."""
    opens = {
        "none": set(),
        "malformed": set(),
        "server active": {"Authenticate", ENVOY_CHECK},
        "server in grace": {"Authenticate", ENVOY_CHECK},
        "server past grace": set(),
        "server revoked": set(),
        "server expired": set(),
        "widget allowed origin": {"VerifyWidgetKey"},
        "widget other origin": set(),
        "conversation secret": {"VerifyConversationSecret"},
        "admin": ADMIN_RPCS,
        "internal reveal": {"RevealTestCredential"},
        "internal issue": {"IssueConversationSecret"},
    }
    assert set(opens) == set(CREDENTIAL_COLUMNS)
    for column, rpcs in opens.items():
        assert _ok_rpcs(CREDENTIALS, column) == rpcs, column
    for rpc in RPCS:
        assert CREDENTIALS.rows.get(rpc, {}).get(proper(rpc)) == "OK", f"{rpc}: its own credential must open it"


def _group(rpc: str) -> str:
    """The caller policy's group of an RPC, as ``docs/security.md`` (*Caller policy*) states it."""
    name = rpc.rsplit("/", 1)[-1]
    if name in ("Authenticate", "VerifyWidgetKey", "Check") or name.startswith("Verify"):
        return "verify"
    if "Reveal" in name:
        return "lab_reveal"
    return "widget_secrets" if name == "IssueConversationSecret" else "admin"


def test_each_caller_reaches_exactly_the_groups_the_policy_gives_it():
    policy = tomllib.loads(doc_policy(TEXT))
    groups = {name: set(policy["callers"].get(name, policy["default"])) for name in CALLER_COLUMNS}
    groups["no URI SAN"] = set(policy["default"])  # identity `unnamed`, which the policy does not name
    groups["plaintext anonymous"] = {"verify", "admin", "lab_reveal", "widget_secrets"}  # built-in
    for column in CALLER_COLUMNS:
        row = {rpc: CALLERS.rows.get(rpc, {}).get(column) for rpc in RPCS}
        if column == "foreign CA":
            assert set(row.values()) == {TLS_HANDSHAKE}
            continue
        assert {rpc for rpc, cell in row.items() if cell == "OK"} == {r for r in RPCS if _group(r) in groups[column]}
        assert set(row.values()) <= {"OK", "CALLER_NOT_ALLOWED"}, column
