# machine.UART's readinto on top of a class's own read(n) (None: nothing there). Portable: the
# host's SimUART (bus.py) and the VM-side proxy UART (sim/vm/vm_bus.py, which sim/vm/pn532_vm.py
# installs into the MicroPython VM together with this file) both inherit it, so the one
# readinto the firmware's HSU transport calls is the same code on both sides of the bus.


class UartReadInto:
    def read(self, n=None):
        raise NotImplementedError

    def readinto(self, buf, nbytes=None):
        n = len(buf) if nbytes is None else min(nbytes, len(buf))
        data = self.read(n)
        if data is None:
            return None
        buf[: len(data)] = data
        return len(data)
