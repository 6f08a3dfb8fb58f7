"""The committed generated code matches protos/ (run `make protos` after changing a .proto)."""

from pathlib import Path

from auth_service.app import protogen

GENERATED = Path(protogen.ROOT) / "clients" / "python" / "src"


def test_generated_code_is_fresh(tmp_path):
    fresh = protogen.generate(tmp_path)
    assert fresh, "no proto files found"
    names = set()
    for path in fresh:
        rel = path.relative_to(tmp_path)
        names.add(rel)
        committed = GENERATED / rel
        assert committed.exists(), f"{rel} is not committed: run `make protos`"
        assert committed.read_text() == path.read_text(), f"{rel} is stale: run `make protos`"
    package = GENERATED / "woes" / "auth" / "v1"
    extra = {p.relative_to(GENERATED) for p in package.glob("*_pb2*")} - names
    assert not extra, f"generated files without a proto: {sorted(map(str, extra))}"
