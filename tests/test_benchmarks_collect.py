"""benchmarks/collect.py: the tables it reads from benchmarks/results/ and the page it writes."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def collect():
    spec = importlib.util.spec_from_file_location("collect", ROOT / "benchmarks" / "collect.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_read_tables_finds_each_table_under_its_heading(collect, tmp_path):
    path = tmp_path / "r.md"
    path.write_text(
        "# Title\n\nMachine: x\n\n## First\n\n| a | b |\n|---|---:|\n| 1 | **2.5x** |\n"
        "| 3 | 4 s |\n\ntext | with a bar\n\n## Second\n\n| c |\n|---|\n| z |\n"
    )
    tables = collect.read_tables(path)
    assert tables == [("First", ["a", "b"], [["1", "2.5x"], ["3", "4 s"]]),
                      ("Second", ["c"], [["z"]])]


def test_number_reads_the_first_number_and_refuses_text(collect):
    assert collect.number("50x faster") == 50.0
    assert collect.number("0.12 s") == 0.12
    assert collect.number("7.5e-14") == 7.5e-14
    with pytest.raises(ValueError, match="no number"):
        collect.number("-")


def test_section_body_drops_the_top_heading_and_demotes_the_others(collect):
    body = collect.section_body(
        "# Own title\n\nMachine: a\nCommand: b\n\n## Part\n\n```\n# not a heading\n```\n"
    )
    lines = body.splitlines()
    assert "# Own title" not in body
    assert "### Part" in lines
    assert "# not a heading" in lines  # fenced code is left alone
    assert lines[0] == "Machine: a\\"  # a hard line break keeps the two lines apart
    assert lines[1] == "Command: b"


def test_missing_table_is_an_error_naming_the_file(collect):
    with pytest.raises(ValueError, match="core.md"):
        collect.find_table("core.md", ["no such column"])


def test_the_stored_results_give_every_plotted_ratio(collect):
    speedups, costs = collect.ratio_rows()
    labels = [row[0] for row in speedups + costs]
    assert any("LDA" in label for label in labels)
    assert sum("extraction" in label for label in labels) == 2
    assert sum("cv=5 / cv=1" in label for label in labels) == 2
    assert sum(label.startswith(("fit:", "wide:", "threads:")) for label in labels) == 4
    for _label, measured, goal in speedups + costs:
        assert measured > 0 and goal > 0


def test_the_page_places_every_figure_under_its_section(collect, tmp_path, monkeypatch):
    # main() once wrote the page without its figures (the plotters were never called)
    monkeypatch.setattr(collect, "STATIC", tmp_path)
    page = tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir()
    monkeypatch.setattr(collect, "HERE", tmp_path / "benchmarks")
    collect.main()
    text = page.read_text()
    for filename, figures in collect.FIGURES.items():
        for image, _caption in figures:
            assert (tmp_path / image).stat().st_size > 0
            assert f"{{figure}} _static/{image}" in text
    assert "fit: fit vs one float64 X.T @ X" in [row[0] for row in collect.ratio_rows()[1]]
    assert any(row[0].startswith("extraction, DDPM") and row[2] == 4.0
               for row in collect.ratio_rows()[0])
