"""Runs last (file order): nothing the suite logged holds a secret the suite created."""

from tests import conftest


def test_no_secret_in_any_log():
    assert conftest.LOG_DIR is not None
    files = sorted(conftest.LOG_DIR.glob("*.log"))
    assert files, "no log files were written"
    text = "\n".join(f.read_text(errors="replace") for f in files)
    assert text.strip(), "the suite logged nothing: the scan would prove nothing"
    secrets = conftest.MINTED | conftest.OTHER_SECRETS
    assert secrets, "the suite minted no secret"
    leaked = sorted(s[:20] + "..." for s in secrets if s in text)
    assert not leaked, f"secrets found in logs: {leaked}"
