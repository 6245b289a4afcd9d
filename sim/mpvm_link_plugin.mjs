// Plugin for sim/mpvm_bridge.mjs (loaded by sim/runtime_mp.py): gives the MicroPython VM a
// module `simhost` whose link(hex) call blocks until the host answers. A POS running in the
// VM reads its card through it: each APDU goes out to the Python host (where the virtual
// NFC field and the card live) and the answer comes back, synchronously, while the VM's
// exec request is still running.
//
// Out (stdout, the bridge's framing): u32 header_len | u32 0 | {"cb": "link", "apdu": hex}
// In  (stdin, read synchronously):    u32 len | {"resp": hex} or {"error": text}
// link() returns the response as hex, or "!" + text when the link failed.
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
            // stdin is non-blocking under Node: wait a little and try again
            if (e.code === "EAGAIN") { Atomics.wait(nap, 0, 0, 1); continue; }
            throw e;
        }
        if (k === 0) throw new Error("host closed stdin during a link call");
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
    mp.registerJsModule("simhost", {
        link(hex) {
            const h = Buffer.from(JSON.stringify({ cb: "link", apdu: hex }), "utf8");
            const lens = Buffer.allocUnsafe(8);
            lens.writeUInt32BE(h.length, 0);
            lens.writeUInt32BE(0, 4);
            writeAll(Buffer.concat([lens, h]));
            const n = readExact(4).readUInt32BE(0);
            const answer = JSON.parse(readExact(n).toString("utf8"));
            if (typeof answer.resp === "string") return answer.resp;
            return "!" + String(answer.error || "link");
        },
    });
}
