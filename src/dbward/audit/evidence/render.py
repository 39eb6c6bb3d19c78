"""The evidence report as HTML (with inline SVG charts) and as PDF (fpdf2)."""

from __future__ import annotations

from importlib.resources import files

import jinja2
from fpdf import FPDF
from fpdf.fonts import FontFace
from markupsafe import Markup, escape

from dbward.audit.evidence.charts import COLOURS, Bar, svg
from dbward.audit.evidence.report import Report, Table


def _table(table: Table) -> Markup:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    if not table.rows:
        body = f'<tr><td colspan="{len(table.headers)}" class="note">none in this period</td></tr>'
    else:
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>"
            for row in table.rows
        )
    note = f'<p class="note">{escape(table.note)}</p>' if table.note else ""
    # Every cell and header was escaped above.
    markup = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"
    return Markup(markup)  # noqa: S704


def html(report: Report) -> str:
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = environment.from_string(
        files("dbward.audit.evidence").joinpath("report.html.j2").read_text(encoding="utf-8")
    )
    charts = {s.key: svg(s.chart) for s in report.sections if s.chart is not None}
    return template.render(r=report, table=_table, charts=charts)


# PDF ----------------------------------------------------------------------------------


def _latin(text: str) -> str:
    """The core PDF fonts cover Latin-1: anything else is replaced, not dropped silently."""
    return text.replace("…", "...").replace("–", "-").encode("latin-1", "replace").decode("latin-1")


class _Pdf(FPDF):
    def __init__(self, report: Report) -> None:
        super().__init__(orientation="L", unit="mm", format="A4")
        self.report = report
        self.set_auto_page_break(auto=True, margin=14)
        self.set_title(_latin(f"dbward evidence: {report.framework_name}"))
        self.set_author("dbward")

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font("Helvetica", size=8)
        self.set_text_color(110)
        text = f"dbward evidence, {self.report.framework_name}, {self.report.since} to "
        self.cell(0, 5, _latin(text + f"{self.report.until}   page {self.page_no()}"), align="R")


def _pdf_table(pdf: _Pdf, table: Table) -> None:
    pdf.set_font("Helvetica", size=7.5)
    pdf.set_fill_color(255, 255, 255)  # rows unfilled, whatever was drawn before
    rows = table.rows or (("none in this period",) + ("",) * (len(table.headers) - 1),)
    with pdf.table(
        headings_style=FontFace(emphasis="BOLD", fill_color=(243, 244, 246)),
        line_height=4,
        text_align="LEFT",
        first_row_as_headings=True,
        borders_layout="SINGLE_TOP_LINE",
    ) as grid:
        header = grid.row()
        for cell in table.headers:
            header.cell(_latin(cell))
        for row in rows:
            line = grid.row()
            for cell in row:
                line.cell(_latin(cell))
    if table.note:
        pdf.set_font("Helvetica", style="I", size=7.5)
        pdf.cell(0, 5, _latin(table.note), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)


def _pdf_chart(pdf: _Pdf, series: list[Bar]) -> None:
    width, height = 250.0, 50.0
    if pdf.will_page_break(height + 14):
        pdf.add_page()
    x0, y0 = pdf.l_margin + 12, pdf.get_y() + 2
    peak = max((bar.total for bar in series), default=0) or 1
    step = width / max(len(series), 1)
    pdf.set_draw_color(90)
    pdf.line(x0, y0 + height, x0 + width, y0 + height)
    pdf.set_font("Helvetica", size=7)
    pdf.set_xy(x0 - 12, y0 - 1)
    pdf.cell(10, 3, str(peak), align="R")
    pdf.set_xy(x0 - 12, y0 + height - 3)
    pdf.cell(10, 3, "0", align="R")
    tick_every = max(1, len(series) // 8)
    for index, bar in enumerate(series):
        x = x0 + index * step
        y = y0 + height
        for decision, count in bar.counts:
            if not count:
                continue
            h = height * count / peak
            y -= h
            colour = COLOURS[decision].lstrip("#")
            pdf.set_fill_color(*(int(colour[i : i + 2], 16) for i in (0, 2, 4)))
            pdf.rect(x + step * 0.1, y, max(step * 0.8, 0.3), h, style="F")
        if index % tick_every == 0:
            pdf.set_xy(x - 8 + step / 2, y0 + height + 1)
            pdf.cell(16, 3, _latin(bar.label), align="C")
    legend_y = y0 + height + 6
    for offset, decision in enumerate(COLOURS):
        colour = COLOURS[decision].lstrip("#")
        pdf.set_fill_color(*(int(colour[i : i + 2], 16) for i in (0, 2, 4)))
        pdf.rect(x0 + offset * 30, legend_y, 3, 3, style="F")
        pdf.set_xy(x0 + offset * 30 + 4, legend_y - 0.5)
        pdf.cell(20, 4, decision)
    pdf.set_y(legend_y + 7)


def pdf(report: Report) -> bytes:
    document = _Pdf(report)
    document.add_page()
    document.set_font("Helvetica", style="B", size=18)
    document.cell(
        0,
        10,
        _latin(f"Compliance evidence: {report.framework_name}"),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    document.set_font("Helvetica", size=10)
    document.set_text_color(90)
    period = f"dbward audit trail, {report.since} to {report.until}; generated {report.generated}"
    document.cell(0, 6, _latin(period), new_x="LMARGIN", new_y="NEXT")
    document.set_text_color(0)
    document.ln(2)
    verdict = "Trail verified" if report.verified else "Trail verification FAILED"
    document.set_fill_color(*((220, 252, 231) if report.verified else (254, 226, 226)))
    document.set_font("Helvetica", style="B", size=11)
    document.cell(60, 8, verdict, fill=True, new_x="LMARGIN", new_y="NEXT")
    document.ln(3)
    document.set_font("Helvetica", size=9)
    for label, value in report.facts:
        document.set_text_color(90)
        document.cell(55, 5, _latin(label))
        document.set_text_color(0)
        document.multi_cell(0, 5, _latin(value), new_x="LMARGIN", new_y="NEXT")
    document.ln(3)
    _heading(document, "Controls and their evidence")
    _pdf_table(document, report.controls)
    for section in report.sections:
        # A section with a chart keeps its heading, summary and chart on one page.
        _heading(document, section.title, reserve=90 if section.chart is not None else 30)
        document.set_font("Helvetica", size=9)
        document.multi_cell(0, 5, _latin(section.summary), new_x="LMARGIN", new_y="NEXT")
        document.ln(1)
        if section.chart is not None:
            _pdf_chart(document, section.chart)
        for table in section.tables:
            _pdf_table(document, table)
    return bytes(document.output())


def _heading(document: _Pdf, text: str, *, reserve: float = 30) -> None:
    if document.will_page_break(reserve):
        document.add_page()
    document.set_font("Helvetica", style="B", size=13)
    document.ln(2)
    document.cell(0, 8, _latin(text), new_x="LMARGIN", new_y="NEXT")
    document.set_draw_color(200)
    document.line(
        document.l_margin, document.get_y(), document.w - document.r_margin, document.get_y()
    )
    document.ln(2)
