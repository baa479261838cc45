"""Server-side SVG charts for the admin: no JavaScript library, no CDN, readable without JS.

`throughput_chart` draws documents completed per minute as bars, with a y axis (0, half, top),
a time axis (every 15 minutes), axis titles, and a <title> tooltip on every bar.
"""

import math
from datetime import UTC

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

WIDTH, HEIGHT = 720, 210
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 40  # margins: room for the axes' labels
LABEL_EVERY_MINUTES = 15


def nice_ceiling(value: float) -> int:
    """The smallest of 1, 2, 5 × 10^n that is at least `value` (at least 1): a round axis top."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def throughput_chart(buckets) -> SafeString:
    """An <svg> bar chart of `buckets` (objects with `.minute`, a datetime, and `.documents`)."""
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_ceiling(max((bucket.documents for bucket in buckets), default=0))
    slot = plot_width / max(len(buckets), 1)
    bottom = TOP + plot_height
    bars = []
    for index, bucket in enumerate(buckets):
        height = plot_height * bucket.documents / top
        minute = bucket.minute.astimezone(UTC)
        bars.append(
            (
                f"{LEFT + index * slot + 0.5:.1f}",
                f"{bottom - height:.1f}",
                f"{max(slot - 1, 1):.1f}",
                f"{height:.1f}",
                _("%(minute)s UTC: %(documents)s documents")
                % {"minute": f"{minute:%H:%M}", "documents": f"{bucket.documents:,}"},
            )
        )
    grid = [
        (f"{bottom - plot_height * fraction:.1f}", f"{round(top * fraction):,}")
        for fraction in (0, 0.5, 1)
        if fraction == 0 or top * fraction == round(top * fraction)
    ]
    ticks = [
        (f"{LEFT + index * slot + slot / 2:.1f}", f"{bucket.minute.astimezone(UTC):%H:%M}")
        for index, bucket in enumerate(buckets)
        if index % LABEL_EVERY_MINUTES == 0 or index == len(buckets) - 1
    ]
    total = sum(bucket.documents for bucket in buckets)
    return format_html(
        '<svg class="sidecar-chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        'aria-label="{label}" '
        'xmlns="http://www.w3.org/2000/svg">'
        "{grid}"
        '<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>'
        "{bars}{ticks}"
        '<text x="14" y="{middle}" transform="rotate(-90 14 {middle})" text-anchor="middle" '
        'class="axis-title">{y_title}</text>'
        '<text x="{centre}" y="{height_less}" text-anchor="middle" class="axis-title">{x_title}</text>'
        "</svg>",
        width=WIDTH,
        height=HEIGHT,
        label=_("Documents completed per minute, last %(minutes)s minutes: %(total)s in all")
        % {"minutes": len(buckets), "total": f"{total:,}"},
        y_title=_("documents / min"),
        x_title=_("time (UTC)"),
        grid=format_html_join(
            "",
            '<line x1="' + str(LEFT) + '" y1="{0}" x2="' + str(WIDTH - RIGHT) + '" y2="{0}" class="grid"/>'
            '<text x="' + str(LEFT - 6) + '" y="{0}" dy="4" text-anchor="end" class="y-label">{1}</text>',
            grid,
        ),
        left=LEFT,
        right=WIDTH - RIGHT,
        bottom=f"{bottom:.1f}",
        bars=format_html_join(
            "",
            '<rect x="{}" y="{}" width="{}" height="{}" class="bar"><title>{}</title></rect>',
            bars,
        ),
        ticks=format_html_join(
            "",
            '<text x="{}" y="' + f"{bottom + 16:.1f}" + '" text-anchor="middle" class="x-label">{}</text>',
            ticks,
        ),
        middle=TOP + plot_height / 2,
        centre=LEFT + plot_width / 2,
        height_less=HEIGHT - 4,
    )
