"""Generate the Python code of ``protos/`` (``make protos``; also used by the staleness test)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "protos"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Write ``*_pb2.py``, ``*_pb2.pyi`` and, for files with services, ``*_pb2_grpc.py``."""
    import grpc_tools
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = []
    for proto in proto_files():
        rel = proto.relative_to(PROTO_ROOT).with_suffix("")
        grpc_file = out_dir / f"{rel}_pb2_grpc.py"
        if not re.search(r"^service\s+\w+", proto.read_text(), re.M) and grpc_file.exists():
            grpc_file.unlink()  # no service, nothing to generate but an empty module
        written += sorted((out_dir / rel.parent).glob(f"{rel.name}_pb2*"))
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "clients" / "python" / "src"
    for path in generate(out):
        print(path.relative_to(out))
