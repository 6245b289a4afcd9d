# SSD1306 OLED (128x64 or 128x32) on I2C as a hal.Display: a few text lines in framebuf's 8x8 font.
#
#   oled = SSD1306(i2c, 128, 64, addr=0x3C)   # sends the init sequence, clears the panel
#   oled.show(["Amount", "12.50"])             # hal.Display
#
# I2C framing (SSD1306 datasheet 8.1.5): after the address comes a control byte: 0x00 = the
# following bytes are commands, 0x80 = one command follows (Co=1), 0x40 = the following bytes are
# display data. The init sequence is the one of micropython-lib's ssd1306 driver, sent as a single
# command stream; a frame is column range + page range, then the 1 KB buffer (MONO_VLSB: one
# byte = 8 vertical pixels of a page).
from ..core.hal import Display
from ..core.runtime import const

SET_CONTRAST = const(0x81)
SET_ENTIRE_ON = const(0xA4)
SET_NORM_INV = const(0xA6)
SET_DISP = const(0xAE)
SET_MEM_ADDR = const(0x20)
SET_COL_ADDR = const(0x21)
SET_PAGE_ADDR = const(0x22)
SET_DISP_START_LINE = const(0x40)
SET_SEG_REMAP = const(0xA0)
SET_MUX_RATIO = const(0xA8)
SET_IREF_SELECT = const(0xAD)
SET_COM_OUT_DIR = const(0xC0)
SET_DISP_OFFSET = const(0xD3)
SET_COM_PIN_CFG = const(0xDA)
SET_DISP_CLK_DIV = const(0xD5)
SET_PRECHARGE = const(0xD9)
SET_VCOM_DESEL = const(0xDB)
SET_CHARGE_PUMP = const(0x8D)

CHAR_W = const(8)  # framebuf's built-in font is 8x8
CHAR_H = const(8)


def init_sequence(width, height, external_vcc=False):
    """The command bytes that power the panel up (display off first, on last)."""
    return bytes((
        SET_DISP,  # display off
        SET_MEM_ADDR, 0x00,  # horizontal addressing
        SET_DISP_START_LINE,  # start line 0
        SET_SEG_REMAP | 0x01,  # column 127 mapped to SEG0
        SET_MUX_RATIO, height - 1,
        SET_COM_OUT_DIR | 0x08,  # scan from COM[N] to COM0
        SET_DISP_OFFSET, 0x00,
        SET_COM_PIN_CFG, 0x02 if width > 2 * height else 0x12,
        SET_DISP_CLK_DIV, 0x80,
        SET_PRECHARGE, 0x22 if external_vcc else 0xF1,
        SET_VCOM_DESEL, 0x30,  # 0.83 * Vcc
        SET_CONTRAST, 0xFF,
        SET_ENTIRE_ON,  # output follows RAM
        SET_NORM_INV,  # not inverted
        SET_IREF_SELECT, 0x30,  # internal IREF during display on
        SET_CHARGE_PUMP, 0x10 if external_vcc else 0x14,
        SET_DISP | 0x01,  # display on
    ))  # fmt: skip


class SSD1306(Display):
    def __init__(self, i2c, width=128, height=64, addr=0x3C, external_vcc=False):
        self.i2c = i2c
        self.addr = addr
        self.width = width
        self.height = height
        self.external_vcc = external_vcc
        self.pages = height // 8
        self.buffer = bytearray(self.pages * width)
        self.lines = []  # what show() last drew
        self._cmd = bytearray(2)
        self._data = [b"\x40", self.buffer]  # control byte 0x40: display data follows
        self._fb = None
        self.init_display()

    def init_display(self):
        self.write_cmds(init_sequence(self.width, self.height, self.external_vcc))
        for i in range(len(self.buffer)):
            self.buffer[i] = 0
        self.flush()

    def write_cmd(self, cmd):
        self._cmd[0] = 0x80  # Co=1, D/C#=0: one command byte follows
        self._cmd[1] = cmd
        self.i2c.writeto(self.addr, self._cmd)

    def write_cmds(self, cmds):
        self.i2c.writeto(self.addr, b"\x00" + cmds)  # Co=0, D/C#=0: a command stream

    def poweroff(self):
        self.write_cmd(SET_DISP)

    def poweron(self):
        self.write_cmd(SET_DISP | 0x01)

    def contrast(self, value):
        self.write_cmds(bytes((SET_CONTRAST, value)))

    def invert(self, on):
        self.write_cmd(SET_NORM_INV | (1 if on else 0))

    def flush(self):
        """Send the whole buffer to the panel's RAM."""
        x0 = 0
        if self.width != 128:
            x0 = (128 - self.width) // 2  # narrow panels use the centre columns
        self.write_cmds(bytes((
            SET_COL_ADDR, x0, x0 + self.width - 1,
            SET_PAGE_ADDR, 0, self.pages - 1,
        )))  # fmt: skip
        self.i2c.writevto(self.addr, self._data)

    def framebuffer(self):
        """A framebuf.FrameBuffer over the buffer (built on first use)."""
        if self._fb is None:
            import framebuf

            fmt = framebuf.MONO_VLSB
            self._fb = framebuf.FrameBuffer(self.buffer, self.width, self.height, fmt)
        return self._fb

    def show(self, lines):
        """hal.Display: up to height/8 lines of width/8 characters; few lines get double spacing."""
        fb = self.framebuffer()
        rows = self.height // CHAR_H
        cols = self.width // CHAR_W
        lines = [str(s)[:cols] for s in lines[:rows]]
        step = 2 * CHAR_H if len(lines) <= rows // 2 else CHAR_H
        fb.fill(0)
        for i, line in enumerate(lines):
            fb.text(line, 0, i * step, 1)
        self.lines = lines
        self.flush()
