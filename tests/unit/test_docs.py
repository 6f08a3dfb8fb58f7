"""The reference tables of docs/ are the code's: every setting and every error reason, once.

- docs/configuration.md: its settings table names every variable ``Settings.from_env`` reads and no
  other, every flag of ``woes-auth serve`` and no other, and shows the code's defaults.
- docs/errors.md: its reasons table names every reason of ``errors.proto`` and of the service's
  error classes and no other, each with the status code the service answers it with.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import pkgutil
import re
from pathlib import Path

import grpc
from woes.auth.v1 import errors_pb2

import auth_service
from auth_service.app import config
from auth_service.cli import main as cli
from auth_service.domain.errors import AuthError
from tests.support.paths import ROOT

BACKTICKED = re.compile(r"`([^`]+)`")


def table_rows(path: Path, header: str) -> list[list[str]]:
    """The cells of the markdown table whose header row starts with ``header``."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


# -- configuration ------------------------------------------------------------------


class RecordingEnviron(dict):
    """An environment that remembers every name looked up in it."""

    def __init__(self, *args):
        super().__init__(*args)
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.asked.add(key)
        return super().__contains__(key)


def settings_variables(monkeypatch) -> set[str]:
    """Every WOES_AUTH_* variable ``Settings.from_env`` reads into a setting, found by reading them.

    A variable read only to be refused (a retired setting) has no field of ``Settings`` and is none.
    """
    environ = RecordingEnviron({k: v for k, v in os.environ.items() if not k.startswith(config.ENV_PREFIX)})
    monkeypatch.setattr(os, "environ", environ)
    config.Settings.from_env()
    fields = {f.name for f in dataclasses.fields(config.Settings)}
    return {
        name
        for name in environ.asked
        if name.startswith(config.ENV_PREFIX) and name.removeprefix(config.ENV_PREFIX).lower() in fields
    }


def serve_flags() -> set[str]:
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {o for a in commands.choices["serve"]._actions for o in a.option_strings if o.startswith("--")} - {"--help"}


def configuration_table() -> list[list[str]]:
    return table_rows(ROOT / "docs" / "configuration.md", "| variable | flag | default |")


def shown(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_the_recorder_sees_what_from_env_reads(monkeypatch):
    assert {"WOES_AUTH_LISTEN", "WOES_AUTH_PRODUCTION", "WOES_AUTH_CACHE_TTL"} <= settings_variables(monkeypatch)


def test_every_setting_is_in_the_configuration_table_once(monkeypatch):
    documented = [BACKTICKED.findall(row[0]) for row in configuration_table()]
    assert all(len(names) <= 1 for names in documented), "one variable per row"
    names = [n[0] for n in documented if n]
    assert len(names) == len(set(names)), f"listed twice: {sorted({n for n in names if names.count(n) > 1})}"
    read = settings_variables(monkeypatch)
    assert not read - set(names), f"settings missing from docs/configuration.md: {sorted(read - set(names))}"
    assert not set(names) - read, f"docs/configuration.md names settings that do not exist: {sorted(set(names) - read)}"


def test_every_serve_flag_is_in_the_configuration_table():
    documented = {flag for row in configuration_table() for flag in BACKTICKED.findall(row[1])}
    assert documented == serve_flags(), (
        f"missing: {sorted(serve_flags() - documented)}; not flags of serve: {sorted(documented - serve_flags())}"
    )


def test_the_configuration_table_shows_the_codes_defaults():
    defaults = {f.name: f.default for f in dataclasses.fields(config.Settings)}
    checked = 0
    for row in configuration_table():
        names = BACKTICKED.findall(row[0])
        field = names[0].removeprefix(config.ENV_PREFIX).lower() if names else ""
        default = defaults.get(field, dataclasses.MISSING)
        if default is dataclasses.MISSING or default in ("", 0, False):
            continue  # computed (data folder, cores) or off: said in words
        cell = BACKTICKED.findall(row[2])
        assert cell and cell[0] == shown(default), (
            f"{names[0]}: the table shows {row[2]!r}, the code {shown(default)!r}"
        )
        checked += 1
    assert checked >= 15


# -- errors ---------------------------------------------------------------------------


def error_classes() -> list[type[AuthError]]:
    for module in pkgutil.walk_packages(auth_service.__path__, "auth_service."):
        if ".migrations" not in module.name:
            importlib.import_module(module.name)
    found, todo = [], [AuthError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_reason_is_in_the_errors_table_with_its_code():
    rows = table_rows(ROOT / "docs" / "errors.md", "| code | reason | when |")
    table = {}
    for row in rows:
        code, reason = (BACKTICKED.findall(cell)[0] for cell in row[:2])
        assert reason not in table, f"{reason} is listed twice"
        table[reason] = code
    published = {
        n.removeprefix("ERROR_REASON_") for n in errors_pb2.ErrorReason.keys() if not n.endswith("UNSPECIFIED")
    }  # noqa: SIM118
    raised = {cls.reason: cls.category for cls in error_classes()}
    assert not published - set(table), (
        f"reasons of errors.proto missing from docs/errors.md: {sorted(published - set(table))}"
    )
    assert not set(raised) - set(table), f"reasons missing from docs/errors.md: {sorted(set(raised) - set(table))}"
    unknown = set(table) - published - set(raised)
    assert not unknown, f"docs/errors.md names reasons that do not exist: {sorted(unknown)}"
    for reason, category in raised.items():
        assert table[reason] == grpc.StatusCode[category.name].name, f"{reason}: answered with {category.name}"


# -- links ------------------------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings."""
    found = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_every_relative_link_of_the_docs_resolves():
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and (dest.is_dir() or anchor not in anchors(dest)):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
