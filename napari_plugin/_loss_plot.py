"""A live loss plot drawn with QPainter: generator, discriminator, cycle and identity losses against the step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["LossPlot", "SERIES", "series_from_history"]

# Each curve sums the losses of both directions, as a training log reports them.
SERIES: dict[str, tuple[tuple[str, ...], str]] = {
    "generator": (("G",), "#f4a261"),
    "discriminator": (("D_A", "D_B"), "#e76f51"),
    "cycle": (("cycle_A", "cycle_B"), "#2a9d8f"),
    "identity": (("idt_A", "idt_B"), "#8ab17d"),
}


def series_from_history(history: Sequence[Mapping[str, float]]) -> dict[str, list[tuple[float, float]]]:
    """``{curve: [(step, value), ...]}`` from the Trainer's history (one dict of losses per logged step)."""
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in SERIES}
    for row in history:
        for name, (keys, _) in SERIES.items():
            if all(k in row for k in keys):
                out[name].append((float(row["step"]), float(sum(row[k] for k in keys))))
    return out


class LossPlot(QWidget):
    """Loss curves of a training run; call :meth:`set_history` as steps are logged."""

    MARGIN = 34

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.series: dict[str, list[tuple[float, float]]] = {name: [] for name in SERIES}
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("training losses (both directions summed) against the step")

    def set_history(self, history: Sequence[Mapping[str, float]]) -> None:
        self.series = series_from_history(history)
        self.update()

    def clear(self) -> None:
        self.set_history([])

    def paintEvent(self, _event: object) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        fg = self.palette().windowText().color()
        m = self.MARGIN
        box = QRectF(m, 20, max(1.0, self.width() - m - 8), max(1.0, self.height() - 20 - 18))
        painter.setPen(QPen(fg, 1))
        painter.drawRect(box)
        points = [p for pts in self.series.values() for p in pts]
        if not points:
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, "losses appear here during training")
            painter.end()
            return
        x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
        y0, y1 = min(0.0, min(p[1] for p in points)), max(p[1] for p in points)
        x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

        def at(step: float, value: float) -> QPointF:
            return QPointF(box.left() + (step - x0) / (x1 - x0) * box.width(),
                           box.bottom() - (value - y0) / (y1 - y0) * box.height())

        painter.drawText(QRectF(0, box.top() - 6, m - 4, 14), Qt.AlignmentFlag.AlignRight, f"{y1:.3g}")
        painter.drawText(QRectF(0, box.bottom() - 8, m - 4, 14), Qt.AlignmentFlag.AlignRight, f"{y0:.3g}")
        painter.drawText(QRectF(box.left(), box.bottom() + 2, 80, 14), Qt.AlignmentFlag.AlignLeft, f"{x0:.0f}")
        painter.drawText(QRectF(box.right() - 80, box.bottom() + 2, 80, 14), Qt.AlignmentFlag.AlignRight,
                         f"step {x1:.0f}")
        legend_x = float(m)
        for name, (_, colour) in SERIES.items():
            pts = self.series[name]
            pen = QPen(QColor(colour), 2)
            painter.setPen(pen)
            if len(pts) > 1:
                painter.drawPolyline(QPolygonF([at(s, v) for s, v in pts]))
            elif pts:
                painter.drawEllipse(at(*pts[0]), 2, 2)
            painter.drawLine(QPointF(legend_x, 10), QPointF(legend_x + 14, 10))
            painter.setPen(QPen(fg, 1))
            painter.drawText(QPointF(legend_x + 18, 14), name)
            legend_x += 26 + painter.fontMetrics().horizontalAdvance(name)
        painter.end()
