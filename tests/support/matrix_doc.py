"""The authorization matrix as ``docs/security.md`` writes it: its two tables, their legends and the
test policy, read from the page; and, run as ``python -m tests.support.matrix_doc``, the generator that
prints both tables as the servers answer them (the page's tables are plain Markdown written from
that output, each cell reviewed against the design)."""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests import conftest
from tests.support.matrix_helpers import CALLER_COLUMNS, CREDENTIAL_COLUMNS, RPCS, Outcome, call, proper
from tests.support.matrix_servers import caller_channels, mtls_server, plaintext_server
from tests.support.paths import ROOT

# -- the tables in the documentation ----------------------------------------------------------------

DOC = ROOT / "docs" / "security.md"
SECTION = "## Authorization matrix"
CREDENTIALS_TABLE = "### Credentials × RPCs"
CALLERS_TABLE = "### Callers × RPCs"


@dataclass
class DocTable:
    """One matrix table as written: its column names, its rows (RPC -> column -> cell) and the
    legend under it (reason -> status code name)."""

    columns: tuple[str, ...]
    rows: dict[str, dict[str, str]]
    legend: dict[str, str]


def _cells(line: str) -> list[str]:
    return [c.strip().strip("`").strip() for c in line.strip().strip("|").split("|")]


def _markdown_tables(text: str) -> list[list[list[str]]]:
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(_cells(line))
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return [[row for row in t if not all(set(c) <= set("-: ") for c in row)] for t in tables]


def subsection(text: str, heading: str) -> str:
    """The text under ``heading`` (inside the matrix section) up to the next heading of its level or
    above; empty when absent."""
    start = text.find(SECTION)
    if start < 0:
        return ""
    section = text[start + len(SECTION) :]
    end = section.find("\n## ")
    section = section if end < 0 else section[:end]
    at = section.find(heading)
    if at < 0:
        return ""
    rest = section[at + len(heading) :]
    end = rest.find("\n### ")
    return rest if end < 0 else rest[:end]


def doc_table(text: str, heading: str) -> DocTable:
    """The matrix table under ``heading`` and the legend that follows it."""
    found = _markdown_tables(subsection(text, heading))
    matrix = next((t for t in found if t and t[0][0] == "RPC"), None)
    reasons = next((t for t in found if t and t[0][:2] == ["reason", "status code"]), None)
    if matrix is None:
        return DocTable((), {}, {})
    columns = tuple(matrix[0][1:])
    rows = {row[0]: dict(zip(columns, row[1:], strict=False)) for row in matrix[1:]}
    legend = {row[0]: row[1] for row in (reasons or [[]])[1:]}
    return DocTable(columns, rows, legend)


def doc_policy(text: str) -> str:
    """The test policy of the callers table: the first ``toml`` fenced block of its subsection."""
    body = subsection(text, CALLERS_TABLE)
    start = body.find("```toml\n")
    end = body.find("\n```", start + 1)
    return body[start + len("```toml\n") : end + 1] if 0 <= start < end else ""


# -- printing the tables (the generator) ----------------------------------------------------------


def markdown(rows: dict[str, dict[str, str]], columns: tuple[str, ...]) -> str:
    head = "| RPC | " + " | ".join(columns) + " |"
    rule = "| --- |" + " --- |" * len(columns)
    body = [f"| `{rpc}` | " + " | ".join(rows[rpc][c] for c in columns) + " |" for rpc in rows]
    return "\n".join([head, rule, *body])


def legend(outcomes: list[Outcome]) -> str:
    codes = sorted({(o.result, o.code) for o in outcomes if o.result != "OK"})
    return "\n".join(["| reason | status code |", "| --- | --- |", *(f"| `{r}` | `{c}` |" for r, c in codes)])


def main() -> None:  # pragma: no cover - run by hand to write the tables
    policy = doc_policy(DOC.read_text())
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="woes-auth-matrix-")))
        if conftest.LOG_DIR is None:  # outside pytest: the servers' logs go with the rest
            conftest.LOG_DIR = tmp / "logs"
            conftest.LOG_DIR.mkdir()
        plain = stack.enter_context(plaintext_server(tmp / "plain"))
        world = plain.world
        table1 = {
            rpc: {c: call(world, plain.channel, rpc, world.credentials[c]) for c in CREDENTIAL_COLUMNS} for rpc in RPCS
        }
        print(markdown({r: {c: o.result for c, o in row.items()} for r, row in table1.items()}, CREDENTIAL_COLUMNS))
        print()
        print(legend([o for row in table1.values() for o in row.values()]))
        mtls = stack.enter_context(mtls_server(tmp / "mtls", policy))
        channels = stack.enter_context(caller_channels(mtls.port, tmp / "certs"))
        table2 = {}
        for rpc in RPCS:
            row = {"plaintext anonymous": call(world, plain.channel, rpc, world.credentials[proper(rpc)])}
            for caller in CALLER_COLUMNS[1:]:
                row[caller] = call(mtls.world, channels[caller], rpc, mtls.world.credentials[proper(rpc)])
            table2[rpc] = row
        print()
        print(markdown({r: {c: o.result for c, o in row.items()} for r, row in table2.items()}, CALLER_COLUMNS))
        print()
        print(legend([o for row in table2.values() for o in row.values()]))


if __name__ == "__main__":
    main()
