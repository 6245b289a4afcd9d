// Shared by the bridge plugins that let code in the MicroPython VM call the Python host
// synchronously (sim/vm/mpvm_link_plugin.mjs, sim/vm/mpvm_bus_plugin.mjs): one message out on stdout
// in the bridge's framing, one answer read back from stdin while the VM's exec request runs.
//
// Out (stdout): u32 header_len | u32 0 | JSON message
// In  (the answer pipe):  u32 len | JSON answer
//
// The answer pipe is a file descriptor of its own (`--answer-fd N` on the bridge's command line,
// sim/vm/mpvm.py opens it): Node leaves it blocking, so readSync waits in the kernel and wakes
// the moment the host answers. Without it the answer comes on stdin, which Node makes
// non-blocking, and each read polls in 1 ms naps (measured: 1.08 ms a call for a 4-byte answer).
import fs from "node:fs";

const nap = new Int32Array(new SharedArrayBuffer(4));
const fdArg = process.argv.indexOf("--answer-fd");
const ANSWER_FD = fdArg > 0 ? parseInt(process.argv[fdArg + 1], 10) : 0;

function readExact(n, what) {
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
        let k;
        try {
            k = fs.readSync(ANSWER_FD, buf, got, n - got, null);
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
