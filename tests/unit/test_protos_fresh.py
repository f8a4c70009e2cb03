"""The committed generated code matches protos/: regenerating changes nothing."""

from __future__ import annotations

from pathlib import Path

from scripts.gen_protos import PACKAGE_DIR, ROOT, generate


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh = {p.name: p.read_bytes() for p in (tmp_path / PACKAGE_DIR).iterdir()}
    committed = {
        p.name: p.read_bytes()
        for p in (ROOT / PACKAGE_DIR).iterdir()
        if p.is_file() and p.suffix in {".py", ".pyi"}
    }
    assert fresh.keys() == committed.keys(), "run `make protos`: the file set differs"
    stale = sorted(name for name in fresh if fresh[name] != committed[name])
    assert not stale, f"run `make protos`: stale generated files {stale}"
