"""Regenerates the Python code of protos/ into grantflow/v1/ (the one command for it).

`python -m scripts.gen_protos` writes the code; `--check DIR` writes it into DIR instead so a test
can compare it with what is committed and fail when the committed code is stale.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("grantflow") / "v1"
# mypy-protobuf plugins sit beside the interpreter in the virtual environment.
BIN = Path(sys.executable).parent
INIT_TEXT = '"""Generated from protos/grantflow/v1 by `make protos`; do not edit."""\n'


def generate(out_root: Path) -> list[Path]:
    """Generates messages, gRPC stubs and mypy stubs for every proto file under out_root."""
    protos = sorted(
        str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto")
    )
    well_known = str(resources.files("grpc_tools") / "_proto")
    out_dir = out_root / PACKAGE_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*_pb2*.py*"):
        stale.unlink()
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out_dir / "__init__.py").write_text(INIT_TEXT)
    return sorted(out_dir.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", type=Path, help="generate into this directory instead")
    args = parser.parse_args()
    files = generate(args.check or ROOT)
    print(f"generated {len(files)} files", file=sys.stderr)


if __name__ == "__main__":
    main()
