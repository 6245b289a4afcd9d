// Plugin for sim/mpvm_bridge.mjs (loaded by sim/pn532_vm.py): gives the MicroPython VM a module
// `simbus` whose call(op, hex) blocks until the Python host answers. The machine-shaped proxies
// of sim/vm_bus.py (I2C, SPI, UART, Pin) turn every bus transaction of a driver running in the VM
// into one call, served by the host's emulated chip (sim/pn532.py) while the exec request runs.
//
// Out (stdout, the bridge's framing): u32 header_len | u32 0 | {"cb": "bus", "op": op, "data": hex}
// In  (stdin, read synchronously):    u32 len | {"r": hex} or {"error": text}
// call() returns the answer as hex, or "!" + text when the host raised.
import fs from "node:fs";

const nap = new Int32Array(new SharedArrayBuffer(4));

function readExact(n) {
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
        let k;
        try {
            k = fs.readSync(0, buf, got, n - got, null);
        } catch (e) {
            if (e.code === "EAGAIN") { Atomics.wait(nap, 0, 0, 1); continue; }
            throw e;
        }
        if (k === 0) throw new Error("host closed stdin during a bus call");
        got += k;
    }
    return buf;
}

function writeAll(buf) {
    let off = 0;
    while (off < buf.length) {
        try {
            off += fs.writeSync(1, buf, off, buf.length - off);
        } catch (e) {
            if (e.code === "EAGAIN") { Atomics.wait(nap, 0, 0, 1); continue; }
            throw e;
        }
    }
}

export function setup({ mp }) {
    mp.registerJsModule("simbus", {
        call(op, hex) {
            const h = Buffer.from(JSON.stringify({ cb: "bus", op, data: hex }), "utf8");
            const lens = Buffer.allocUnsafe(8);
            lens.writeUInt32BE(h.length, 0);
            lens.writeUInt32BE(0, 4);
            writeAll(Buffer.concat([lens, h]));
            const n = readExact(4).readUInt32BE(0);
            const answer = JSON.parse(readExact(n).toString("utf8"));
            if (typeof answer.r === "string") return answer.r;
            return "!" + String(answer.error || "bus");
        },
    });
}
