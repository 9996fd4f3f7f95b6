"""The analysis notebook runs top to bottom against a real demo archive."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pipeline.cli import run_demo
from pipeline.progress import LogProgress

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "archive_analysis.ipynb"


@pytest.fixture(scope="module")
def demo_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    target = tmp_path_factory.mktemp("demo") / "archive-demo"
    report = asyncio.run(run_demo(60, target, progress=LogProgress()))
    assert report.ok and report.recordings_archived > 0
    return target, report.recordings_archived


def outputs_of(cell) -> list[dict]:
    return [dict(o) for o in cell.get("outputs", [])]


def test_the_notebook_runs_against_the_demo_archive(
    demo_archive: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, archived = demo_archive
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Report figures the notebook computed, for the assertions below.
    notebook.cells.append(
        nbformat.v4.new_code_cell(
            "import json\n"
            "print(json.dumps({'recordings': int(overview['recordings'][0]),"
            " 'matches': None if matches is None else len(matches), 'keyword': KEYWORD}))"
        )
    )
    monkeypatch.setenv("ARCHIVE_ROOT", str(root))
    monkeypatch.setenv("ARCHIVE_KEYWORD", "refund")
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3")
    client.execute()

    figures = [
        o for cell in notebook.cells for o in outputs_of(cell) if "image/png" in o.get("data", {})
    ]
    assert len(figures) >= 2  # per-day bars and the duration histogram
    summary = json.loads(notebook.cells[-1].outputs[0]["text"])
    assert summary["recordings"] == archived
    assert summary["keyword"] == "refund"
    assert summary["matches"] is not None and summary["matches"] > 0


def test_the_notebook_is_committed_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    parameters = notebook.cells[1]
    assert "parameters" in parameters.metadata.get("tags", [])
    assert 'os.environ.get("ARCHIVE_ROOT", "archive-demo")' in parameters.source
