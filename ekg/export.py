"""Export the executed notebooks for write-ups: report/NN_name.html for each notebook (standalone,
figures embedded) and report/report.html, every notebook in order behind one contents list.

    python -m ekg export [--notebooks DIR] [--out DIR]      (make export; the end of make report)

The export reads the outputs stored in the notebooks and runs nothing, so it shows exactly the run
that was committed; it refuses a notebook in which a cell raised an error or a code cell never ran.

Imports: config (the repository root), nbformat and nbconvert inside the functions. Nothing of the
data or model code.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

from . import config

#: The combined report's file name in the output folder.
COMBINED = "report.html"

_HEADING = re.compile(r"^(#{1,2})\s+(.+?)\s*#*\s*$")


class ExportError(RuntimeError):
    """A notebook that cannot be exported as a finished run: an error output or a cell that never ran."""


def _read(path):
    import nbformat

    return nbformat.read(str(path), as_version=4)


def run_problems(nb) -> list[str]:
    """Return one line per code cell of nb whose run raised an error or that never ran (empty: all good)."""
    problems = []
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        if not cell.source.strip():
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            problems.append(f"code cell {i + 1} raised {errors[0].get('ename')}: {errors[0].get('evalue')}")
        elif cell.get("execution_count") is None:
            problems.append(f"code cell {i + 1} was never run")
    return problems


def sections(nb) -> list[tuple[int, str]]:
    """Return the notebook's headings of level 1 and 2 as (level, text), in order."""
    found = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        fenced = False
        for line in cell.source.splitlines():
            fenced ^= line.lstrip().startswith("```")
            match = None if fenced else _HEADING.match(line)
            if match:
                found.append((len(match.group(1)), match.group(2)))
    return found


def figures(nb) -> int:
    """Return how many image outputs (PNG, JPEG or SVG) the notebook's code cells hold."""
    kinds = ("image/png", "image/jpeg", "image/svg+xml")
    return sum(any(k in out.get("data", {}) for k in kinds)
               for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", []))


def _title(nb, fallback) -> str:
    heads = [text for level, text in sections(nb) if level == 1]
    return heads[0] if heads else fallback


def _html(nb, title) -> str:
    from nbconvert import HTMLExporter

    # embed_images: images that markdown cells link to go into the file too (outputs always are),
    # so each file stands alone
    exporter = HTMLExporter(embed_images=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body


def _anchored(nb, key):
    """A copy of nb whose level-1 and level-2 headings carry unique anchors nb-KEY-N (the headings
    nbconvert makes ids of repeat across notebooks); return (copy, [(level, text, anchor)])."""
    import copy

    nb = copy.deepcopy(nb)
    entries = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines, fenced = [], False
        for line in cell.source.splitlines():
            fenced ^= line.lstrip().startswith("```")
            match = None if fenced else _HEADING.match(line)
            if match:
                anchor = f"nb-{key}-{len(entries)}"
                entries.append((len(match.group(1)), match.group(2), anchor))
                lines.append(f'<a id="{anchor}"></a>')
                lines.append("")
            lines.append(line)
        cell.source = "\n".join(lines)
    return nb, entries


def export_report(notebooks=None, out=None) -> list[Path]:
    """Write OUT/NN_name.html for each notebook NOTEBOOKS/NN_*.ipynb and OUT/report.html with all of
    them in order behind a contents list; return the written paths (the combined report last).

    Raises ExportError, before writing anything, if a notebook has an error output or a code cell
    that never ran, or if there is no notebook.
    """
    import nbformat

    notebooks = Path(notebooks) if notebooks else config.ROOT / "notebooks"
    out = Path(out) if out else config.ROOT / "report"
    paths = sorted(notebooks.glob("[0-9]*.ipynb"))
    if not paths:
        raise ExportError(f"no numbered notebooks (NN_name.ipynb) in {notebooks}")
    read = {path: _read(path) for path in paths}
    problems = [f"{path}: {line}" for path, nb in read.items() for line in run_problems(nb)]
    if problems:
        raise ExportError("the notebooks are not a finished run, so nothing was exported:\n  "
                          + "\n  ".join(problems))
    out.mkdir(parents=True, exist_ok=True)
    written, combined_cells, contents = [], [], []
    for path, nb in read.items():
        title = _title(nb, path.stem)
        target = out / f"{path.stem}.html"
        target.write_text(_html(nb, title), encoding="utf-8")
        written.append(target)
        anchored, entries = _anchored(nb, path.stem)
        if not entries or entries[0][0] != 1:  # a notebook without a title still gets an entry
            anchor = f"nb-{path.stem}-title"
            anchored.cells.insert(0, nbformat.v4.new_markdown_cell(f'<a id="{anchor}"></a>\n\n# {path.stem}'))
            entries.insert(0, (1, path.stem, anchor))
        contents.append(entries)
        combined_cells += anchored.cells
    items = []
    for path, entries in zip(paths, contents):
        (_, title, anchor), subs = entries[0], [e for e in entries[1:] if e[0] == 2]
        sub = "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for _, t, a in subs)
        items.append(f'<li><a href="#{anchor}">{html.escape(title)}</a> <small>({path.name})</small>'
                     + (f"<ul>{sub}</ul>" if sub else "") + "</li>")
    report_title = _report_title()
    toc = nbformat.v4.new_markdown_cell(f"# {report_title}\n\n## Contents\n\n<ol>{''.join(items)}</ol>")
    combined = nbformat.v4.new_notebook(cells=[toc] + combined_cells, metadata=read[paths[0]].metadata)
    target = out / COMBINED
    target.write_text(_html(combined, report_title), encoding="utf-8")
    return written + [target]


def _report_title() -> str:
    """The README's first heading, the project's title."""
    readme = config.ROOT / "README.md"
    if readme.is_file():
        for line in readme.read_text(encoding="utf-8").splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return "Report"
