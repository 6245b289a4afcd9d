// Shared by the bridge plugins that let code in the MicroPython VM call the Python host
// synchronously (sim/vm/mpvm_link_plugin.mjs, sim/vm/mpvm_bus_plugin.mjs): one message out on stdout
// in the bridge's framing, one answer read back from stdin while the VM's exec request runs.
//
// Out (stdout): u32 header_len | u32 0 | JSON message
// In  (stdin):  u32 len | JSON answer
import fs from "node:fs";

const nap = new Int32Array(new SharedArrayBuffer(4));

function readExact(n, what) {
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
        let k;
        try {
            k = fs.readSync(0, buf, got, n - got, null);
        } catch (e) {
            // stdin is non-blocking under Node: wait a little and try again
            if (e.code === "EAGAIN") { Atomics.wait(nap, 0, 0, 1); continue; }
            throw e;
        }
        if (k === 0) throw new Error(`host closed stdin during a ${what} call`);
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

// Send `message` (an object with a "cb" name) to the host; return its parsed answer.
export function callHost(message) {
    const h = Buffer.from(JSON.stringify(message), "utf8");
    const lens = Buffer.allocUnsafe(8);
    lens.writeUInt32BE(h.length, 0);
    lens.writeUInt32BE(0, 4);
    writeAll(Buffer.concat([lens, h]));
    const n = readExact(4, message.cb).readUInt32BE(0);
    return JSON.parse(readExact(n, message.cb).toString("utf8"));
}
