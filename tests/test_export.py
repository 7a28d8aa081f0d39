"""Export for write-ups: save_fig writes PNG and SVG; report/ holds each notebook and one combined report."""
import html
import re
import xml.etree.ElementTree as ET

import nbformat
import pytest
from nbclient import NotebookClient

from ekg import cli, config
from ekg.export import COMBINED, ExportError, export_report, figures, run_problems, sections

IMG = re.compile(r'<img[^>]+src="data:image/(?:png|jpeg|svg\+xml)')


def notebook(*cells):
    """A notebook of ("md", text) and ("code", source) cells."""
    make = {"md": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    nb = nbformat.v4.new_notebook(cells=[make[kind](text) for kind, text in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


SETUP = f"import sys\nsys.path.insert(0, {str(config.ROOT)!r})\nimport utils\n%matplotlib inline\n" \
        "import matplotlib.pyplot as plt"


def plot(name):
    return f"fig, ax = plt.subplots(figsize=(3, 2))\nax.plot([0, 1, 0])\nutils.save_fig(fig, {name!r})\nplt.show()"


@pytest.fixture(scope="module")
def run_notebooks(tmp_path_factory):
    """Two small notebooks run in fast mode (the test environment), as make report would run them."""
    folder = tmp_path_factory.mktemp("notebooks")
    books = {
        "01_first.ipynb": notebook(("md", "# 01 · First\n\nIntro."), ("code", SETUP),
                                   ("md", "## Two figures"), ("code", plot("01_a")), ("code", plot("01_b")),
                                   ("md", "## A table\n\n```\n# not a heading: inside a code block\n```"),
                                   ("code", "import pandas as pd\npd.DataFrame({'x': [1, 2]})")),
        "02_second.ipynb": notebook(("md", "# 02 · Second"), ("code", SETUP), ("md", "## One figure"),
                                    ("code", plot("02_a")), ("md", "## Setup again, as in every notebook")),
    }
    for name, nb in books.items():
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
        nbformat.write(nb, folder / name)
    return folder


def test_save_fig_writes_png_and_svg_with_the_same_name(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import utils

    monkeypatch.setattr(config, "PLOTS_DIR", tmp_path / "plots")
    fig, ax = plt.subplots()
    ax.plot([1, 3, 2])
    png = utils.save_fig(fig, "99_check")
    assert png == tmp_path / "plots" / "99_check.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = png.with_suffix(".svg")
    assert ET.parse(svg).getroot().tag.endswith("svg")
    first = svg.read_bytes()
    utils.save_fig(fig, "99_check")
    assert svg.read_bytes() == first  # an unchanged figure is an unchanged file: no date, fixed ids
    plt.close(fig)


def test_export_has_every_section_and_figure_in_notebook_order(run_notebooks, tmp_path):
    written = export_report(run_notebooks, tmp_path)
    assert [p.name for p in written] == ["01_first.html", "02_second.html", COMBINED]
    books = [nbformat.read(p, as_version=4) for p in sorted(run_notebooks.glob("*.ipynb"))]
    assert [figures(nb) for nb in books] == [2, 1]
    for nb, page in zip(books, written):
        text = page.read_text()
        assert len(IMG.findall(text)) == figures(nb)
        for _, heading in sections(nb):
            assert heading in text
    report = (tmp_path / COMBINED).read_text()
    assert len(IMG.findall(report)) == 3
    assert "not a heading" in report and "# not a heading" not in [h for nb in books for _, h in sections(nb)]
    # the contents list: every section, linked, in notebook order, each link landing on an anchor
    contents = report[report.index("Contents"):report.index("</ol>")]
    links = re.findall(r'<a href="#([^"]+)">([^<]+)</a>', contents)
    expected = [h for nb in books for _, h in sections(nb)]
    assert [text for _, text in links] == [html.escape(h) for h in expected]
    positions = [report.index(f'id="{anchor}"') for anchor, _ in links]
    assert positions == sorted(positions) and positions[0] > report.index("</ol>")
    # standalone: no image or style sheet fetched (only MathJax and require.js, for math and widgets)
    assert not re.search(r'<img[^>]+src="http|<link[^>]+href="http', report)


def test_the_command_line_builds_the_same_report(run_notebooks, tmp_path, capsys):
    assert cli.main(["export", "--notebooks", str(run_notebooks), "--out", str(tmp_path), "-q"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_first.html", "02_second.html", COMBINED]


def test_the_command_line_names_the_folder_it_wrote_by_default(run_notebooks, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config, "ROOT", tmp_path)  # the default folder is the repository's report/
    assert cli.main(["export", "--notebooks", str(run_notebooks)]) == 0
    assert f"ekg: wrote 3 files to {tmp_path / 'report'}: 01_first.html" in capsys.readouterr().err


@pytest.mark.parametrize("broken, problem", [("1 / 0", "code cell 2 raised ZeroDivisionError: division by zero"),
                                             (None, "code cell 2 was never run")])
def test_a_notebook_whose_run_failed_is_not_exported(run_notebooks, tmp_path, capsys, broken, problem):
    folder = tmp_path / "nb"
    folder.mkdir()
    for path in run_notebooks.glob("*.ipynb"):
        (folder / path.name).write_bytes(path.read_bytes())
    nb = nbformat.read(folder / "02_second.ipynb", as_version=4)
    cell = [c for c in nb.cells if c.cell_type == "code"][1]
    if broken:
        cell.source = broken
        cell.outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                               traceback=[])]
    else:
        cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, folder / "02_second.ipynb")
    assert run_problems(nb) == [problem]
    with pytest.raises(ExportError, match=f"02_second.ipynb: {problem}"):
        export_report(folder, tmp_path / "report")
    assert not (tmp_path / "report").exists()  # nothing half-written
    status = cli.main(["export", "--notebooks", str(folder), "--out", str(tmp_path / "report")])
    assert status == 1 and problem in capsys.readouterr().err


def test_the_committed_notebooks_export_with_every_section_and_figure(tmp_path):
    """What make export builds from the committed run: all five notebooks, nothing missing."""
    written = export_report(out=tmp_path)
    books = [nbformat.read(p, as_version=4) for p in sorted((config.ROOT / "notebooks").glob("0*.ipynb"))]
    assert len(written) == len(books) + 1 >= 6
    report = written[-1].read_text()
    assert len(IMG.findall(report)) == sum(figures(nb) for nb in books) > 15
    for nb, page in zip(books, written):
        assert len(IMG.findall(page.read_text())) == figures(nb)
        assert all(heading in report or html.escape(heading) in report for _, heading in sections(nb))
