# Runs INSIDE the MicroPython VM, never on CPython: sim/vm/pn532_vm.py copies this file into the VM
# as /simbus/vm_bus.py. Objects with the method shapes of machine.I2C / machine.SPI /
# machine.UART / machine.Pin whose every transaction is one synchronous call to the Python host
# (the `simbus` JS module of mpvm_bus_plugin.mjs), where the emulated chip lives. With them the
# unchanged firmware drivers run in real MicroPython against sim/nfc/pn532/.
import binascii

import simbus
from uart_shape import UartReadInto  # sim/nfc/pn532/uart_shape.py, installed beside this


def call(op, data=b""):
    r = simbus.call(op, binascii.hexlify(data).decode())
    if r.startswith("!"):
        raise OSError(r[1:])
    return binascii.unhexlify(r)


class I2C:
    def writeto(self, addr, buf, stop=True):
        call("i2c_w", bytes((addr,)) + bytes(buf))
        return len(buf)

    def writevto(self, addr, bufs, stop=True):
        return self.writeto(addr, b"".join(bytes(b) for b in bufs), stop)

    def readfrom_into(self, addr, buf, stop=True):
        n = len(buf)
        buf[:] = call("i2c_r", bytes((addr, n >> 8, n & 0xFF)))


class SPI:
    MSB = 0
    LSB = 1

    def write(self, buf):
        call("spi_w", bytes(buf))

    def readinto(self, buf, write=0):
        n = len(buf)
        buf[:] = call("spi_r", bytes((n >> 8, n & 0xFF, write)))

    def write_readinto(self, wbuf, rbuf):
        rbuf[:] = call("spi_wr", bytes(wbuf))


class UART(UartReadInto):  # readinto: uart_shape.py, the host's SimUART's too
    def write(self, buf):
        call("uart_w", bytes(buf))
        return len(buf)

    def any(self):
        r = call("uart_any")
        return r[0] << 8 | r[1]

    def read(self, n=None):
        n = 4096 if n is None else n
        data = call("uart_r", bytes((n >> 8, n & 0xFF)))
        return data if data else None


class Pin:
    def __init__(self, pid):
        self.pid = pid

    def value(self, v=None):
        if v is None:
            return call("pin_get", bytes((self.pid,)))[0]
        call("pin_set", bytes((self.pid, 1 if v else 0)))

    __call__ = value

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)
