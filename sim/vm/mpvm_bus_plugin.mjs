// Plugin for sim/vm/mpvm_bridge.mjs (loaded by sim/vm/pn532_vm.py): gives the MicroPython VM a module
// `simbus` whose call(op, hex) blocks until the Python host answers. The machine-shaped proxies
// of sim/vm/vm_bus.py (I2C, SPI, UART, Pin) turn every bus transaction of a driver running in the VM
// into one call, served by the host's emulated chip (sim/nfc/pn532/) while the exec request runs.
//
// Out: {"cb": "bus", "op": op, "data": hex}; in: {"r": hex} or {"error": text}
// (framing: sim/vm/mpvm_host_call.mjs). call() returns the answer as hex, or "!" + text when the
// host raised.
import { callHost } from "./mpvm_host_call.mjs";

export function setup({ mp }) {
    mp.registerJsModule("simbus", {
        call(op, hex) {
            const answer = callHost({ cb: "bus", op, data: hex });
            if (typeof answer.r === "string") return answer.r;
            return "!" + String(answer.error || "bus");
        },
    });
}
