"""Line plots as PNG files with nothing but numpy and the standard library.

The design card's packages have no plotting library, and the README's figures only need
lines, markers, ticks, a legend and labels, so this draws them into an RGB array with a
5x7 bitmap font and writes the PNG itself (zlib + CRC chunks).

    plot = LinePlot(title="...", x_label="meta-iterations", y_label="validation accuracy")
    plot.add([0, 50, 100], [0.2, 0.6, 0.8], label="MAML", color=BLUE)
    write_png("curve.png", render([plot]))
"""

import struct
import zlib

import numpy as np

BLUE, ORANGE, GREEN, RED, PURPLE, GREY = ((31, 119, 180), (255, 127, 14), (44, 160, 44),
                                          (214, 39, 40), (148, 103, 189), (127, 127, 127))
BLACK, LIGHT = (0, 0, 0), (225, 225, 225)

# Rows top to bottom, 5 bits each (bit 4 = leftmost pixel); an eighth row is a descender.
_GLYPHS = {
    "0": (14, 17, 19, 21, 25, 17, 14), "1": (4, 12, 4, 4, 4, 4, 14),
    "2": (14, 17, 1, 2, 4, 8, 31), "3": (31, 2, 4, 2, 1, 17, 14),
    "4": (2, 6, 10, 18, 31, 2, 2), "5": (31, 16, 30, 1, 1, 17, 14),
    "6": (6, 8, 16, 30, 17, 17, 14), "7": (31, 1, 2, 4, 8, 8, 8),
    "8": (14, 17, 17, 14, 17, 17, 14), "9": (14, 17, 17, 15, 1, 2, 12),
    "A": (14, 17, 17, 17, 31, 17, 17), "B": (30, 17, 17, 30, 17, 17, 30),
    "C": (14, 17, 16, 16, 16, 17, 14), "D": (28, 18, 17, 17, 17, 18, 28),
    "E": (31, 16, 16, 30, 16, 16, 31), "F": (31, 16, 16, 30, 16, 16, 16),
    "G": (14, 17, 16, 23, 17, 17, 15), "H": (17, 17, 17, 31, 17, 17, 17),
    "I": (14, 4, 4, 4, 4, 4, 14), "J": (7, 2, 2, 2, 2, 18, 12),
    "K": (17, 18, 20, 24, 20, 18, 17), "L": (16, 16, 16, 16, 16, 16, 31),
    "M": (17, 27, 21, 21, 17, 17, 17), "N": (17, 17, 25, 21, 19, 17, 17),
    "O": (14, 17, 17, 17, 17, 17, 14), "P": (30, 17, 17, 30, 16, 16, 16),
    "Q": (14, 17, 17, 17, 21, 18, 13), "R": (30, 17, 17, 30, 20, 18, 17),
    "S": (15, 16, 16, 14, 1, 1, 30), "T": (31, 4, 4, 4, 4, 4, 4),
    "U": (17, 17, 17, 17, 17, 17, 14), "V": (17, 17, 17, 17, 17, 10, 4),
    "W": (17, 17, 17, 21, 21, 21, 10), "X": (17, 17, 10, 4, 10, 17, 17),
    "Y": (17, 17, 17, 10, 4, 4, 4), "Z": (31, 1, 2, 4, 8, 16, 31),
    "a": (0, 0, 14, 1, 15, 17, 15), "b": (16, 16, 22, 25, 17, 17, 30),
    "c": (0, 0, 14, 16, 16, 17, 14), "d": (1, 1, 13, 19, 17, 17, 15),
    "e": (0, 0, 14, 17, 31, 16, 14), "f": (6, 9, 8, 28, 8, 8, 8),
    "g": (0, 0, 15, 17, 17, 15, 1, 14), "h": (16, 16, 22, 25, 17, 17, 17),
    "i": (4, 0, 12, 4, 4, 4, 14), "j": (2, 0, 6, 2, 2, 2, 18, 12),
    "k": (16, 16, 18, 20, 24, 20, 18), "l": (12, 4, 4, 4, 4, 4, 14),
    "m": (0, 0, 26, 21, 21, 17, 17), "n": (0, 0, 22, 25, 17, 17, 17),
    "o": (0, 0, 14, 17, 17, 17, 14), "p": (0, 0, 30, 17, 17, 30, 16, 16),
    "q": (0, 0, 15, 17, 17, 15, 1, 1), "r": (0, 0, 22, 25, 16, 16, 16),
    "s": (0, 0, 14, 16, 14, 1, 30), "t": (8, 8, 28, 8, 8, 9, 6),
    "u": (0, 0, 17, 17, 17, 19, 13), "v": (0, 0, 17, 17, 17, 10, 4),
    "w": (0, 0, 17, 17, 21, 21, 10), "x": (0, 0, 17, 10, 4, 10, 17),
    "y": (0, 0, 17, 17, 17, 15, 1, 14), "z": (0, 0, 31, 2, 4, 8, 31),
    " ": (0,) * 7, ".": (0, 0, 0, 0, 0, 12, 12), ",": (0, 0, 0, 0, 12, 4, 8),
    "-": (0, 0, 0, 31, 0, 0, 0), "+": (0, 4, 4, 31, 4, 4, 0), "=": (0, 0, 31, 0, 31, 0, 0),
    "%": (24, 25, 2, 4, 8, 19, 3), "(": (2, 4, 8, 8, 8, 4, 2), ")": (8, 4, 2, 2, 2, 4, 8),
    ":": (0, 12, 12, 0, 12, 12, 0), "/": (0, 1, 2, 4, 8, 16, 0), "_": (0, 0, 0, 0, 0, 0, 31),
    "±": (4, 4, 31, 4, 4, 0, 31), "α": (0, 0, 13, 18, 18, 18, 13), "×": (0, 17, 10, 4, 10, 17, 0),
}
SCALE = 2  # font pixels per glyph pixel
CHAR_W, CHAR_H = 6 * SCALE, 9 * SCALE  # advance, line height


def text_bitmap(text):
    """Boolean (9*SCALE, 6*SCALE*len(text)) mask of `text`; unknown characters are an error."""
    missing = sorted(set(text) - set(_GLYPHS))
    if missing:
        raise ValueError(f"no glyph for {''.join(missing)!r} in the plot font (experiments/png_plot.py)")
    mask = np.zeros((9, 6 * len(text)), bool)
    for i, ch in enumerate(text):
        rows = _GLYPHS[ch]
        for r, bits in enumerate(rows):
            for c in range(5):
                mask[r, 6 * i + c] = bool(bits >> (4 - c) & 1)
    return np.kron(mask, np.ones((SCALE, SCALE), bool))


class Canvas:
    """An RGB image with drawing primitives in pixel coordinates (x right, y down)."""

    def __init__(self, width, height):
        self.pixels = np.full((height, width, 3), 255, np.uint8)

    def rect(self, x0, y0, x1, y1, color):
        h, w = self.pixels.shape[:2]
        x0, x1 = sorted((int(round(x0)), int(round(x1))))
        y0, y1 = sorted((int(round(y0)), int(round(y1))))
        self.pixels[max(y0, 0):min(y1 + 1, h), max(x0, 0):min(x1 + 1, w)] = color

    def line(self, x0, y0, x1, y1, color, width=2):
        n = int(max(abs(x1 - x0), abs(y1 - y0)) * 2) + 1
        half = (width - 1) / 2
        for t in np.linspace(0.0, 1.0, n):
            x, y = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            self.rect(x - half, y - half, x + half, y + half, color)

    def text(self, x, y, text, color=BLACK, anchor="left", vertical=False):
        """Writes `text` with its top-left (anchor left), top-centre or top-right at (x, y);
        vertical text reads bottom to top with (x, y) its left-middle."""
        mask = text_bitmap(text)
        if vertical:
            mask = np.rot90(mask)
            y -= mask.shape[0] // 2
        elif anchor == "center":
            x -= mask.shape[1] // 2
        elif anchor == "right":
            x -= mask.shape[1]
        x, y = int(x), int(y)
        h, w = self.pixels.shape[:2]
        region = self.pixels[max(y, 0):min(y + mask.shape[0], h), max(x, 0):min(x + mask.shape[1], w)]
        region[mask[max(-y, 0):max(-y, 0) + region.shape[0], max(-x, 0):max(-x, 0) + region.shape[1]]] = color


def nice_ticks(low, high, target=6):
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / target
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = np.ceil(low / step - 1e-9) * step
    ticks = np.arange(first, high + step * 1e-9, step)
    return ticks, step


def tick_label(value, step):
    decimals = max(0, int(-np.floor(np.log10(step) + 1e-9)))
    return f"{round(value, decimals) + 0.0:.{decimals}f}"  # + 0.0: no "-0"


class LinePlot:
    """One panel: series of (x, y) points, axes with ticks, title, labels and a legend."""

    def __init__(self, title="", x_label="", y_label="", y_range=None, x_range=None,
                 legend="lower right"):
        self.title, self.x_label, self.y_label = title, x_label, y_label
        self.y_range, self.x_range, self.legend = y_range, x_range, legend
        self.series = []

    def add(self, x, y, label=None, color=BLUE, width=2, markers=True):
        x, y = np.asarray(x, float), np.asarray(y, float)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"x and y must be 1-D of the same length, got {x.shape} and {y.shape}")
        self.series.append({"x": x, "y": y, "label": label, "color": color, "width": width,
                            "markers": markers})
        return self

    def _range(self, axis, given):
        if given is not None:
            return given
        values = np.concatenate([s[axis] for s in self.series]) if self.series else np.zeros(1)
        low, high = float(np.min(values)), float(np.max(values))
        pad = 0.05 * (high - low) if high > low else 0.5
        return (low - pad, high + pad) if axis == "y" else (low, high if high > low else low + 1)

    def draw(self, canvas, left, top, width, height):
        """Draws the panel into the box (left, top, width, height) of `canvas`; returns the
        function mapping data (x, y) to pixels (used by the tests)."""
        x_low, x_high = self._range("x", self.x_range)
        y_low, y_high = self._range("y", self.y_range)
        plot_left, plot_right = left + 9 * CHAR_W // 2 + CHAR_H + 8, left + width - 28
        plot_top, plot_bottom = top + 2 * CHAR_H, top + height - 2 * CHAR_H - 16

        def to_pixels(x, y):
            px = plot_left + (np.asarray(x) - x_low) / (x_high - x_low) * (plot_right - plot_left)
            py = plot_bottom - (np.asarray(y) - y_low) / (y_high - y_low) * (plot_bottom - plot_top)
            return px, py

        x_ticks, x_step = nice_ticks(x_low, x_high)
        y_ticks, y_step = nice_ticks(y_low, y_high)
        for t in x_ticks:
            px, _ = to_pixels(t, y_low)
            canvas.line(px, plot_top, px, plot_bottom, LIGHT, width=1)
            canvas.text(px, plot_bottom + 6, tick_label(t, x_step), anchor="center")
        for t in y_ticks:
            _, py = to_pixels(x_low, t)
            canvas.line(plot_left, py, plot_right, py, LIGHT, width=1)
            canvas.text(plot_left - 6, py - CHAR_H // 2, tick_label(t, y_step), anchor="right")
        canvas.line(plot_left, plot_bottom, plot_right, plot_bottom, BLACK, width=1)
        canvas.line(plot_left, plot_top, plot_left, plot_bottom, BLACK, width=1)
        for s in self.series:
            px, py = to_pixels(s["x"], s["y"])
            for i in range(len(px) - 1):
                canvas.line(px[i], py[i], px[i + 1], py[i + 1], s["color"], s["width"])
            if s["markers"]:
                for x, y in zip(px, py):
                    canvas.rect(x - 3, y - 3, x + 3, y + 3, s["color"])
        canvas.text(left + width // 2, top + 4, self.title, anchor="center")
        canvas.text((plot_left + plot_right) // 2, plot_bottom + CHAR_H + 12, self.x_label,
                    anchor="center")
        canvas.text(left + 2, (plot_top + plot_bottom) // 2, self.y_label, vertical=True)
        self._draw_legend(canvas, plot_left, plot_top, plot_right, plot_bottom)
        return to_pixels

    def _draw_legend(self, canvas, plot_left, plot_top, plot_right, plot_bottom):
        entries, seen = [], set()
        for s in self.series:
            if s["label"] and s["label"] not in seen:
                seen.add(s["label"])
                entries.append(s)
        if not entries:
            return
        box_w = max(len(s["label"]) for s in entries) * CHAR_W + 44
        box_h = len(entries) * (CHAR_H + 6) + 8
        x = plot_right - box_w - 8 if "right" in self.legend else plot_left + 8
        y = plot_bottom - box_h - 8 if "lower" in self.legend else plot_top + 8
        canvas.rect(x, y, x + box_w, y + box_h, (255, 255, 255))
        for edge in ((x, y, x + box_w, y), (x, y + box_h, x + box_w, y + box_h),
                     (x, y, x, y + box_h), (x + box_w, y, x + box_w, y + box_h)):
            canvas.line(*edge, GREY, width=1)
        for i, s in enumerate(entries):
            row = y + 6 + i * (CHAR_H + 6)
            canvas.line(x + 6, row + CHAR_H // 2, x + 32, row + CHAR_H // 2, s["color"], 3)
            canvas.text(x + 38, row, s["label"])


def render(panels, columns=None, panel_width=640, panel_height=420):
    """An RGB array holding the panels in a grid (`columns` per row, default all in one)."""
    columns = columns or len(panels)
    rows = -(-len(panels) // columns)
    canvas = Canvas(columns * panel_width, rows * panel_height)
    for i, panel in enumerate(panels):
        panel.draw(canvas, (i % columns) * panel_width, (i // columns) * panel_height,
                   panel_width, panel_height)
    return canvas.pixels


def png_bytes(pixels):
    """The PNG encoding (8-bit RGB, no interlace) of an (H, W, 3) uint8 array."""
    pixels = np.ascontiguousarray(pixels, np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {pixels.shape}")
    height, width = pixels.shape[:2]

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + pixels[r].tobytes() for r in range(height))  # filter 0 per row
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_png(path, pixels):
    with open(path, "wb") as f:
        f.write(png_bytes(pixels))
