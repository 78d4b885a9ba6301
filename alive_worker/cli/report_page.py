"""alive-worker report --format html: one self-contained page, to look at rather than read.

A timeline of the period with the outages coloured by cause, availability per
day as bars against the SLO's line, and the error budget's burn-down, all as
inline SVG drawn here: no script, no style sheet or font from the network, so
the file opens anywhere, offline, and can be mailed.  Every outage drawn
carries its window in data- attributes (tests/test_report.py reads them back
in a browser).  Every text from the server is escaped.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from alive_worker.cli._common import seconds_text
from alive_worker.ledger import BLOCKED, CRASH, FAILOVER, PLANNED, RESTART, SWITCHOVER, UNKNOWN, Ledger

CAUSE_COLOURS = {
    PLANNED: "#5b8def",
    RESTART: "#f0a202",
    CRASH: "#d7263d",
    SWITCHOVER: "#3aa6a0",
    FAILOVER: "#8e44ad",
    BLOCKED: "#e4572e",
    UNKNOWN: "#6c757d",
}
WIDTH = 960
TIMELINE_HEIGHT = 48
CHART_HEIGHT = 180
MARGIN = 72

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
.figures { display: flex; flex-wrap: wrap; gap: 1.5em; margin: 1em 0; }
.figure b { display: block; font-size: 1.6em; }
.over { color: #d7263d; } .within { color: #2a9d55; }
table { border-collapse: collapse; margin-top: 0.5em; }
td, th { padding: 2px 10px; text-align: left; border-bottom: 1px solid #eee; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.legend span { display: inline-block; margin-right: 1em; }
.legend i { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.3em; vertical-align: -0.1em; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
"""


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.3f}%"


class Scale:
    """Time to x on the page."""

    def __init__(self, since: datetime, until: datetime, left: float, right: float) -> None:
        self.since, self.span = since, max((until - since).total_seconds(), 1e-9)
        self.left, self.width = left, right - left

    def __call__(self, moment: datetime) -> float:
        return self.left + self.width * (moment - self.since).total_seconds() / self.span


def timeline(ledger: Ledger) -> str:
    x = Scale(ledger.since, ledger.until, MARGIN, WIDTH - MARGIN)
    parts = [
        f'<svg id="timeline" width="{WIDTH}" height="{TIMELINE_HEIGHT + 20}" role="img" aria-label="outages">'
    ]
    parts.append(
        f'<rect x="{MARGIN}" y="0" width="{WIDTH - 2 * MARGIN}" height="{TIMELINE_HEIGHT}" fill="#2a9d55"/>'
    )
    if ledger.measured_from > ledger.since:
        parts.append(
            f'<rect class="unwatched" x="{MARGIN}" y="0" width="{x(ledger.measured_from) - MARGIN:.2f}" '
            f'height="{TIMELINE_HEIGHT}" fill="#ddd"><title>no heartbeat yet</title></rect>'
        )
    for outage in ledger.outages:
        end = outage.end or ledger.until
        left = x(outage.start)
        # At least three pixels: a 30 s outage in a month is still seen.
        width = max(x(end) - left, 3.0)
        title = f"{outage.cause}: {utc(outage.start)} to {utc(end)}, {seconds_text((end - outage.start).total_seconds())}"
        if outage.detail:
            title += f" ({outage.detail})"
        parts.append(
            f'<rect class="outage" data-start="{outage.start.isoformat()}" '
            f'data-end="{"" if outage.end is None else outage.end.isoformat()}" data-cause="{escape(outage.cause)}" '
            f'x="{left:.2f}" y="0" width="{width:.2f}" height="{TIMELINE_HEIGHT}" '
            f'fill="{CAUSE_COLOURS.get(outage.cause, CAUSE_COLOURS[UNKNOWN])}"><title>{escape(title)}</title></rect>'
        )
    parts.append(f'<text x="{MARGIN}" y="{TIMELINE_HEIGHT + 14}">{escape(utc(ledger.since))}</text>')
    parts.append(
        f'<text x="{WIDTH - MARGIN}" y="{TIMELINE_HEIGHT + 14}" text-anchor="end">{escape(utc(ledger.until))}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def daily_bars(report: dict[str, Any]) -> str:
    days = [d for d in report["per_day"] if d["availability"] is not None]
    slo: float = report["slo"] / 100
    lowest: float = min([slo, *(d["availability"] for d in days)])
    # The axis starts below the lowest bar and the SLO line, so both differences show.
    floor = max(0.0, lowest - max(1 - slo, 1e-4) * 2)
    height = CHART_HEIGHT - 30

    def y(share: float) -> float:
        return 10 + height * (1 - (share - floor) / (1 - floor))

    parts = [
        f'<svg id="days" width="{WIDTH}" height="{CHART_HEIGHT}" role="img" aria-label="availability per day">'
    ]
    step = (WIDTH - 2 * MARGIN) / max(len(days), 1)
    for i, day in enumerate(days):
        top = y(day["availability"])
        colour = "#2a9d55" if day["availability"] >= slo else "#d7263d"
        parts.append(
            f'<rect class="day" data-day="{escape(day["period"])}" data-availability="{day["availability"]:.6f}" '
            f'x="{MARGIN + i * step + step * 0.1:.2f}" y="{top:.2f}" width="{step * 0.8:.2f}" '
            f'height="{10 + height - top:.2f}" fill="{colour}">'
            f"<title>{escape(day['period'])}: {percent(day['availability'])}</title></rect>"
        )
        # A label every day of a week, every few days of a month, every week or so beyond.
        if i % -(-len(days) // 16) == 0:
            parts.append(
                f'<text x="{MARGIN + (i + 0.5) * step:.2f}" y="{CHART_HEIGHT - 6}" text-anchor="middle">'
                f"{escape(day['period'][5:])}</text>"
            )
    parts.append(
        f'<line id="slo" x1="{MARGIN}" x2="{WIDTH - MARGIN}" y1="{y(slo):.2f}" y2="{y(slo):.2f}" '
        f'stroke="#222" stroke-dasharray="6 4"/><text x="{WIDTH - MARGIN + 4}" y="{y(slo) + 4:.2f}">SLO</text>'
    )
    parts.append(
        f'<text x="{MARGIN - 6}" y="{y(1.0) + 4:.2f}" text-anchor="end">100%</text>'
        f'<text x="{MARGIN - 6}" y="{y(floor):.2f}" text-anchor="end">{percent(floor)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def burn_down(report: dict[str, Any], ledger: Ledger) -> str:
    """The budget left over the period: the whole period's allowance, less each outage as it happens."""
    allowed: float = report["budget"]["allowed"].total_seconds()
    x = Scale(ledger.since, ledger.until, MARGIN, WIDTH - MARGIN)
    height = CHART_HEIGHT - 30
    lowest: float = min(0.0, report["budget"]["left"].total_seconds())
    top = max(allowed, 1e-9)

    def y(left: float) -> float:
        return 10 + height * (top - left) / (top - lowest)

    points = [(x(ledger.measured_from), y(allowed))]
    used = 0.0
    for outage in ledger.outages:
        end = outage.end or ledger.until
        points.append((x(outage.start), y(allowed - used)))
        used += (end - outage.start).total_seconds()
        points.append((x(end), y(allowed - used)))
    points.append((x(ledger.until), y(allowed - used)))
    path = " ".join(f"{px:.2f},{py:.2f}" for px, py in points)
    return (
        f'<svg id="budget" width="{WIDTH}" height="{CHART_HEIGHT}" role="img" aria-label="error budget left">'
        f'<line x1="{MARGIN}" x2="{WIDTH - MARGIN}" y1="{y(0):.2f}" y2="{y(0):.2f}" stroke="#999"/>'
        f'<polyline fill="none" stroke="#5b8def" stroke-width="2" points="{path}"/>'
        f'<text x="{MARGIN - 6}" y="{y(allowed) + 4:.2f}" text-anchor="end">{escape(seconds_text(allowed))}</text>'
        f'<text x="{MARGIN - 6}" y="{y(0) + 4:.2f}" text-anchor="end">0</text></svg>'
    )


def outage_rows(report: dict[str, Any]) -> str:
    rows = []
    for outage in report["outages"]:
        rows.append(
            "<tr>"
            f"<td>{escape(utc(outage['start']))}</td>"
            f"<td>{'(ongoing)' if outage['end'] is None else escape(utc(outage['end']))}</td>"
            f'<td class="num">{escape(seconds_text(outage["length"].total_seconds()))}</td>'
            f"<td>{escape(outage['cause'])}</td><td>{escape(outage['detail'])}</td></tr>"
        )
    return "".join(rows) or '<tr><td colspan="5">none</td></tr>'


def page(report: dict[str, Any], ledger: Ledger) -> str:
    budget = report["budget"]
    left: timedelta = budget["left"]
    longest = report["longest_outage"]
    mttr = report["mean_time_to_recover"]
    legend = "".join(
        f'<span><i style="background:{colour}"></i>{escape(cause)}</span>'
        for cause, colour in CAUSE_COLOURS.items()
    )
    figures = [
        ("availability", percent(report["availability"]), ""),
        ("SLO", f"{report['slo']:g}%", ""),
        (
            "error budget left",
            seconds_text(left.total_seconds())
            if left >= timedelta(0)
            else f"over by {seconds_text(-left.total_seconds())}",
            "within" if left >= timedelta(0) else "over",
        ),
        ("outages", str(len(report["outages"])), ""),
        ("longest", "-" if longest is None else seconds_text(longest.total_seconds()), ""),
        ("time to recover", "-" if mttr is None else seconds_text(mttr.total_seconds()), ""),
    ]
    figure_html = "".join(
        f'<div class="figure">{escape(name)}<b class="{cls}">{escape(value)}</b></div>'
        for name, value, cls in figures
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        # Nothing from anywhere: the page is the whole report.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>Write availability of {escape(report['table'])}</title><style>{STYLE}</style></head><body>"
        f"<h1>Write availability of {escape(report['table'])}</h1>"
        f"<div>{escape(utc(ledger.since))} to {escape(utc(ledger.until))}; an outage is a gap of more than "
        f"{escape(seconds_text(ledger.gap.total_seconds()))} between heartbeats</div>"
        f'<div class="figures">{figure_html}</div>'
        f'<h2>Timeline</h2>{timeline(ledger)}<div class="legend">{legend}</div>'
        f"<h2>Availability per day</h2>{daily_bars(report)}"
        f"<h2>Error budget left</h2>{burn_down(report, ledger)}"
        "<h2>Outages</h2><table><tr><th>from</th><th>to</th><th>length</th><th>cause</th><th>detail</th></tr>"
        f"{outage_rows(report)}</table>"
        "</body></html>\n"
    )
