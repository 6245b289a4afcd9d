# Portable tests for firmware/hal/ssd1306.py text rendering. They need MicroPython's framebuf, so on
# CPython (no framebuf) they return at once; tests/firmware/test_micropython_portable.py runs them
# in the VM.
try:
    from tapcash.firmware.hal.ssd1306 import SSD1306
except ImportError:
    from firmware.hal.ssd1306 import SSD1306

try:
    import framebuf
except ImportError:
    framebuf = None


class _I2C:
    def __init__(self):
        self.writes = []

    def writeto(self, addr, buf):
        self.writes.append(bytes(buf))

    def writevto(self, addr, bufs):
        self.writes.append(b"".join(bytes(b) for b in bufs))


def _expected(width, height, lines, step):
    buf = bytearray(width * height // 8)
    fb = framebuf.FrameBuffer(buf, width, height, framebuf.MONO_VLSB)
    for i, line in enumerate(lines):
        fb.text(line, 0, i * step, 1)
    return bytes(buf)


def test_show_renders_text_lines():
    if framebuf is None:
        return
    i2c = _I2C()
    oled = SSD1306(i2c, 128, 64)
    i2c.writes = []
    oled.show(["Pay 12.50", "Tap card"])
    assert oled.lines == ["Pay 12.50", "Tap card"]
    # two lines on 8 rows: double spacing
    assert bytes(oled.buffer) == _expected(128, 64, ["Pay 12.50", "Tap card"], 16)
    assert i2c.writes[0] == b"\x00\x21\x00\x7f\x22\x00\x07"
    assert i2c.writes[1] == b"\x40" + bytes(oled.buffer)
    assert any(oled.buffer)


def test_show_truncates_and_packs_many_lines():
    if framebuf is None:
        return
    oled = SSD1306(_I2C(), 128, 32)
    lines = ["0123456789abcdefXYZ", "b", "c", "d", "e"]
    oled.show(lines)
    assert oled.lines == ["0123456789abcdef", "b", "c", "d"]  # 16 columns, 4 rows
    assert bytes(oled.buffer) == _expected(128, 32, oled.lines, 8)


def test_show_clears_what_was_there():
    if framebuf is None:
        return
    oled = SSD1306(_I2C(), 128, 64)
    oled.show(["#" * 16] * 8)
    oled.show([])
    assert not any(oled.buffer)
