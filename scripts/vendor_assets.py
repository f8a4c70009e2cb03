"""Fetches the console's front-end libraries (console/vendor.json) from the npm registry.

Run at install (`make install`): each package's tarball is downloaded once, checked against the
sha512 integrity pinned in vendor.json (the registry's own `dist.integrity`), and the named files
are written to console/static/vendor/. Nothing is fetched at run time, and a file already there
with the pinned version is left alone. NPM_REGISTRY points it at a mirror.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "console" / "vendor.json"
TARGET = ROOT / "console" / "static" / "vendor"
STAMP = TARGET / ".versions.json"


def tarball_url(registry: str, name: str, version: str) -> str:
    return f"{registry.rstrip('/')}/{name}/-/{name.split('/')[-1]}-{version}.tgz"


def verified(data: bytes, integrity: str) -> bool:
    algorithm, _, expected = integrity.partition("-")
    return base64.b64encode(hashlib.new(algorithm, data).digest()).decode() == expected


def main() -> int:
    registry = os.environ.get("NPM_REGISTRY", "https://registry.npmjs.org")
    packages = json.loads(MANIFEST.read_text())["packages"]
    TARGET.mkdir(parents=True, exist_ok=True)
    have = json.loads(STAMP.read_text()) if STAMP.exists() else {}
    for package in packages:
        name, version = package["name"], package["version"]
        wanted = list(package["files"].values())
        if have.get(name) == version and all((TARGET / file).exists() for file in wanted):
            continue
        url = tarball_url(registry, name, version)
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
        if not verified(data, package["integrity"]):
            print(f"{name}@{version}: 校验和不符 / integrity mismatch for {url}", file=sys.stderr)
            return 1
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member, file in package["files"].items():
                extracted = archive.extractfile(member)
                if extracted is None:
                    print(f"{name}@{version}: no {member} in the tarball", file=sys.stderr)
                    return 1
                (TARGET / file).write_bytes(extracted.read())
        have[name] = version
    STAMP.write_text(json.dumps(have, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
