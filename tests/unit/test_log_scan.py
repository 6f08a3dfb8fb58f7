"""The scan the suite runs when it ends (tests/conftest.py): it finds a secret in any log file."""

from __future__ import annotations

from tests.support.log_scan import leaked_secrets


def test_a_secret_in_any_log_file_is_found_and_shown_shortened(tmp_path):
    secret = "woes_sk_AbCdEfGhIjKl_" + "s" * 49
    (tmp_path / "in-process.log").write_text('{"message": "nothing to see"}\n')
    (tmp_path / "serve-1234.log").write_text(f'{{"message": "token {secret}"}}\n')
    (tmp_path / "notes.txt").write_text(secret)  # not a log file
    assert leaked_secrets(tmp_path, {secret, "another-secret-never-logged"}) == [secret[:20] + "..."]


def test_clean_logs_leak_nothing(tmp_path):
    (tmp_path / "in-process.log").write_text("a line\n")
    assert leaked_secrets(tmp_path, {"pepper-material-123"}) == []
    assert leaked_secrets(tmp_path, set()) == []
