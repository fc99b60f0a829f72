"""The wheel installs everything under one namespace, `sluicegate.*`: no top-level name of the
project can shadow another distribution's (`proto` is proto-plus's, `engine` is anyone's)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import sluicegate

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_holds_only_the_sluicegate_namespace(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(ROOT)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("sluicegate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"sluicegate", f"sluicegate-{sluicegate.__version__}.dist-info"}
    assert "sluicegate/engine/llm_engine.py" in names
    assert "sluicegate/proto/sluicegate/v1/inference.proto" in names


def test_source_checkout_resolves_the_namespace_to_its_folders() -> None:
    import sluicegate.engine

    assert Path(sluicegate.engine.__file__).resolve() == ROOT / "engine" / "__init__.py"
