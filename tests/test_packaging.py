"""The wheel ships kernels/ and integrations/ only as multimodal_store.kernels / .integrations."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# where the optional C kernel (kernels/_simd.c) must build: x86-64 Linux with a C compiler
BUILDS_KERNEL = sys.platform == "linux" and platform.machine() == "x86_64" and shutil.which("cc") is not None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
        check=True, capture_output=True, text=True,
    )
    (path,) = out.glob("multimodal_store-*.whl")
    return path


def test_wheel_layout(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops <= {"multimodal_store", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    assert "multimodal_store/kernels/__init__.py" in names
    assert "multimodal_store/integrations/__init__.py" in names
    assert not any(n.startswith(("kernels/", "integrations/", "tests/")) for n in names)
    if BUILDS_KERNEL:
        assert any(n.startswith("multimodal_store/kernels/_simd.") and n.endswith(".so") for n in names), names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mmstore = multimodal_store.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_imports_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import multimodal_store, multimodal_store.kernels, multimodal_store.integrations, importlib.util;"
        f"assert multimodal_store.__file__.startswith({str(site)!r}), multimodal_store.__file__;"
        f"assert multimodal_store.kernels.__file__.startswith({str(site)!r});"
        "assert importlib.util.find_spec('kernels') is None;"
        "assert importlib.util.find_spec('integrations') is None;"
        + (
            "import multimodal_store.kernels._simd as simd;"
            f"assert simd.__file__.startswith({str(site)!r}), simd.__file__;"
            if BUILDS_KERNEL
            else ""
        )
        + "print('ok')"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
