"""Execute every notebook in notebooks/ top to bottom, offline, with this interpreter's kernel.

Each notebook runs in a fresh ``python3`` kernel (jupyter_client starts it with
``sys.executable``, i.e. this venv; checked by a cell appended in memory), with the notebooks
folder as working directory, one torch/OpenMP thread, the Hugging Face hub offline and
``TMPDIR`` in pytest's temporary folder (the notebooks write their datasets and media under
``tempfile``). A cell error fails the test. Every notebook must show at least one image
(``image/png`` output: the result grids and plots) — except the performance notebook when no
benchmark results exist, which must then say which files are missing. The executed notebooks
are never written back.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "benchmarks" / "results"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT = 300
PERFORMANCE = "04_performance"
MISSING_MESSAGE = "missing benchmark results"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # the notebooks use the inline backend, whose figures become image/png
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        MMSTORE_REAL_MODELS="0",
        TMPDIR=str(tmp),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def execute(path: Path, tmp: Path, **extra_env: str) -> Any:
    """The notebook at ``path`` executed in memory (plus a cell reporting the kernel's prefix)."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint('KERNEL_PREFIX=' + sys.prefix)"))
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute(env=_env(tmp, **extra_env))
    return nb


def _outputs(nb: Any) -> list[Any]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def _text(nb: Any) -> str:
    parts = []
    for out in _outputs(nb):
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out and "text/plain" in out.data:
            parts.append(out.data["text/plain"])
    return "\n".join(parts)


def _images(nb: Any) -> int:
    return sum(1 for out in _outputs(nb) if "data" in out and "image/png" in out.data)


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_offline(path: Path, tmp_path: Path) -> None:
    start = time.perf_counter()
    nb = execute(path, tmp_path)
    elapsed = time.perf_counter() - start
    text = _text(nb)
    assert f"KERNEL_PREFIX={sys.prefix}" in text, "the python3 kernel did not run this interpreter"
    if path.stem == PERFORMANCE and not any(RESULTS.glob("*.csv")):
        assert MISSING_MESSAGE in text
    else:
        assert _images(nb) >= 1, f"{path.name} produced no image output"
    print(f"{path.name}: {elapsed:.1f} s, {_images(nb)} image(s)")


@pytest.mark.slow
@pytest.mark.skipif(not (NOTEBOOKS / f"{PERFORMANCE}.ipynb").exists(), reason="no performance notebook")
def test_performance_notebook_without_results(tmp_path: Path) -> None:
    """With an empty results folder the performance notebook still runs and names what is missing."""
    empty = tmp_path / "results"
    empty.mkdir()
    nb = execute(NOTEBOOKS / f"{PERFORMANCE}.ipynb", tmp_path, MMSTORE_BENCH_RESULTS=str(empty))
    text = _text(nb)
    assert MISSING_MESSAGE in text
    for name in ("ingest.csv", "search.csv", "kernels.csv", "media.csv"):
        assert name in text
