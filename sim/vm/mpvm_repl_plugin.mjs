// Plugin for sim/vm/mpvm_bridge.mjs (loaded by sim/vm/repl_pty.py): the VM's own REPL as a serial
// console, so mpremote, picocom or `tapcash deploy` can talk to the simulated board over a
// pseudo-terminal as they would to an ESP32 on a USB UART.
//
// Ops added to the bridge:
//   repl_boot {}   power-on: run /boot.py and /main.py, then the friendly REPL banner.
//   repl      {}   payload in = bytes typed on the line; payload out = what the board
//                  answered (header: mode "friendly" | "raw", resets = soft resets done).
//
// The VM's event-driven REPL (replInit / replProcessChar) does the REPL itself. Around it,
// as a board would (and as mpremote expects):
//   - soft reset: a REPL exit (Ctrl-D on an empty line, sys.exit()) prints
//     "MPY: soft reboot", makes a fresh VM with the filesystem carried over (the bridge's
//     reset), runs /boot.py, and /main.py only in the friendly REPL (as MicroPython's
//     main loop does); the raw REPL stays raw across the reset.
//   - raw-paste (Ctrl-E "A" Ctrl-A on an empty raw REPL line): answered "R\x01" with a
//     window and flow-control bytes, the code then runs as a raw REPL command (this port's
//     event-driven raw REPL has no raw-paste of its own).
//   - errno: the VM raises Emscripten errno numbers (ENOENT is 44); a traceback's last line
//     "OSError: 44" is shown as "OSError: [Errno 2] ENOENT" (Linux / MicroPython numbers) so
//     mpremote's fs commands understand it. Code inside the VM still sees e.errno == 44.
//   - output is "cooked" like a board's UART: a bare \n goes out as \r\n.
// Code running in the VM cannot be interrupted (JS is single threaded): Ctrl-C only acts at
// a prompt; a program that never returns hangs the simulated board until it is restarted.

import { callHost } from "./mpvm_host_call.mjs";

const RAW_BANNER = "raw REPL; CTRL-B to exit\r\n";
// What a hard reset prints before MicroPython's banner (the ESP32 ROM's first lines).
const ROM_BOOT = "ets Jul 29 2019 12:21:46\r\n\r\nrst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n";
// Run at every boot before /boot.py: the board's own modules (/home/simboard: machine, vm_bus)
// on sys.path, os as a board's (ilistdir gives sizes: mpremote fs ls shows them; urandom), and
// the ROMFS partition (vfs.rom_ioctl, the image at /rom: sim/vm/board_romfs.py).
const BOARD_SETUP = `
import sys
if "/home/simboard" not in sys.path:
    sys.path.append("/home/simboard")
def _tc_board_os():
    import os as real
    class _BoardOS:
        def __init__(self):
            for name in dir(real):
                if not name.startswith("__") and name not in ("ilistdir", "listdir"):
                    setattr(self, name, getattr(real, name))
        def ilistdir(self, d="."):
            for e in real.ilistdir(d):
                if len(e) == 3:
                    size = 0
                    if not e[1] & 0x4000:
                        try:
                            size = real.stat(d.rstrip("/") + "/" + e[0])[6]
                        except OSError:
                            pass
                    e = (e[0], e[1], e[2], size)
                yield e
        def listdir(self, d="."):
            return real.listdir(d)
        def urandom(self, n):
            # an ESP32's os.urandom is its hardware RNG: the host's CSPRNG here
            import js
            buf = js.Uint8Array.new(n)
            js.crypto.getRandomValues(buf)
            return bytes(buf)
    sys.modules["os"] = _BoardOS()
    import board_romfs
    board_romfs.install(real)
_tc_board_os()
del _tc_board_os
`;
const PASTE_WINDOW = 4096; // bytes the host may send before waiting for a \x01 (u16, LE)

// Emscripten errno number -> [Linux / MicroPython errno, name]
const EM_TO_LINUX = {
    63: [1, "EPERM"], 44: [2, "ENOENT"], 71: [3, "ESRCH"], 27: [4, "EINTR"], 29: [5, "EIO"],
    60: [6, "ENXIO"], 1: [7, "E2BIG"], 45: [8, "ENOEXEC"], 8: [9, "EBADF"], 12: [10, "ECHILD"],
    6: [11, "EAGAIN"], 48: [12, "ENOMEM"], 2: [13, "EACCES"], 21: [14, "EFAULT"],
    105: [15, "ENOTBLK"], 10: [16, "EBUSY"], 20: [17, "EEXIST"], 75: [18, "EXDEV"],
    43: [19, "ENODEV"], 54: [20, "ENOTDIR"], 31: [21, "EISDIR"], 28: [22, "EINVAL"],
    41: [23, "ENFILE"], 33: [24, "EMFILE"], 59: [25, "ENOTTY"], 74: [26, "ETXTBSY"],
    22: [27, "EFBIG"], 51: [28, "ENOSPC"], 70: [29, "ESPIPE"], 69: [30, "EROFS"],
    34: [31, "EMLINK"], 64: [32, "EPIPE"], 18: [33, "EDOM"], 68: [34, "ERANGE"],
    16: [35, "EDEADLK"], 37: [36, "ENAMETOOLONG"], 46: [37, "ENOLCK"], 52: [38, "ENOSYS"],
    55: [39, "ENOTEMPTY"], 32: [40, "ELOOP"], 138: [95, "EOPNOTSUPP"], 73: [110, "ETIMEDOUT"],
};

// State of the line; it outlives each VM (a soft reset keeps the REPL mode, like a board).
const st = {
    mode: "friendly",
    rawEmpty: true, // raw REPL: nothing typed since the last prompt
    ctrlE: 0, // raw-paste request bytes seen so far (Ctrl-E, "A")
    paste: null, // raw-paste in progress: {code: [], sinceAck: 0}
    capture: null, // output of the running op (bytes), or null: output goes to the bridge
    input: null, // the bytes of the running repl op (sys.stdin reads the unfed rest)
    inputPos: 0,
    lastCR: false,
    resets: 0,
    hard: false, // machine.reset() asked for a hard reset: the next reboot is one
    live: false, // a program of the board's filesystem runs (boot.py, main.py): the line is live
};
let bridgeRef = null;

function emitRaw(bytes) {
    for (const b of bytes) st.capture.push(b);
}

function emitText(text) {
    emitRaw(Buffer.from(text, "latin1"));
}

function hookInput(mp) {
    // sys.stdin in the VM reads fd 0, which Emscripten would take from the Node process's own
    // stdin: the bridge's request channel. Serve it from the line instead: the bytes of the
    // current input not yet fed to the REPL (typed after the command that reads them); when
    // there are none, end of file for now.
    const stream = mp.FS.streams[0];
    if (!stream) return;
    stream.stream_ops = Object.assign({}, stream.stream_ops, {
        read(s, buf, off, len, pos) {
            const data = st.input;
            if (data && st.inputPos < data.length) {
                const n = Math.min(len, data.length - st.inputPos);
                for (let i = 0; i < n; i++) buf[off + i] = data[st.inputPos + i];
                st.inputPos += n;
                return n;
            }
            if (!st.live) return 0;
            // a running program reads the line as it comes (nothing yet: end of file for now)
            const got = Buffer.from(callHost({ cb: "uart_in", n: len }).r || "", "hex");
            for (let i = 0; i < got.length; i++) buf[off + i] = got[i];
            return got.length;
        },
    });
}

function hookOutput(mp) {
    // Console output reaches fd 1 / fd 2 as bytes: while a repl op runs, take it here
    // (cooked), otherwise leave it to the bridge (exec requests, other plugins).
    for (const fd of [1, 2]) {
        const stream = mp.FS.streams[fd];
        if (!stream) continue;
        const orig = stream.stream_ops;
        stream.stream_ops = Object.assign({}, orig, {
            write(s, buf, off, len, pos) {
                if (st.capture === null) return orig.write(s, buf, off, len, pos);
                if (st.live && !isText(buf, off, len)) {
                    // binary from a running program goes out as written: on a board only text
                    // (print) is cooked, sys.stdout.buffer is raw (the firmware's sync frames,
                    // which always hold control bytes such as their 01 version, have bare 0A)
                    for (let i = 0; i < len; i++) st.capture.push(buf[off + i]);
                    flushLive();
                    return len;
                }
                for (let i = 0; i < len; i++) {
                    const b = buf[off + i];
                    if (b === 10 && !st.lastCR) st.capture.push(13);
                    st.capture.push(b);
                    st.lastCR = b === 13;
                }
                if (st.live) flushLive();
                return len;
            },
        });
    }
}

// Text as print writes it: no control bytes but tab, newline, carriage return and escape.
function isText(buf, off, len) {
    for (let i = 0; i < len; i++) {
        const b = buf[off + i];
        if (b < 32 && b !== 9 && b !== 10 && b !== 13 && b !== 27) return false;
    }
    return true;
}

// While a program of the board runs, what it writes goes out at once (it may never return).
function flushLive() {
    if (!st.capture || st.capture.length === 0) return;
    const out = mapErrno(Buffer.from(st.capture));
    st.capture.length = 0;
    callHost({ cb: "uart_out", data: out.toString("hex") });
}

function mapErrno(out) {
    const text = out.toString("latin1");
    if (!text.includes("OSError: ")) return out;
    const mapped = text.replace(/OSError: (\d+)(?=\r?\n)/g, (m, n) => {
        const e = EM_TO_LINUX[Number(n)];
        return e ? `OSError: [Errno ${e[0]}] ${e[1]}` : m;
    });
    return Buffer.from(mapped, "latin1");
}

// Run a file of the board's filesystem as MicroPython's main loop does (boot.py, main.py):
// in __main__, an exception printed and the board carrying on.
const RUN_FILE = `
def _tc_run(p):
    import sys, __main__
    try:
        f = open(p)
    except OSError:
        return
    try:
        src = f.read()
    finally:
        f.close()
    try:
        exec(compile(src, p, "exec"), __main__.__dict__)
    except BaseException as e:
        import io
        buf = io.StringIO()
        sys.print_exception(e, buf)
        for line in buf.getvalue().split("\\n"):
            if line and "in _tc_run" not in line:
                print(line)
`;

function runFile(mp, path) {
    if (!mp.FS.analyzePath("/" + path).exists) return;
    st.live = true;
    flushLive();
    try {
        mp.runPython(RUN_FILE + `_tc_run(${JSON.stringify(path)})\ndel _tc_run`);
    } catch (e) {
        emitText(`\r\n${e.type || e.name}: ${e.message}\r\n`);
    } finally {
        flushLive();
        st.live = false;
    }
}

function boot(mp) {
    // a board's boot: boot.py always, main.py only when it comes up in the friendly REPL
    try {
        mp.runPython(BOARD_SETUP);
    } catch (e) {
        emitText(`\r\nboard setup failed: ${e.message}\r\n`);
    }
    runFile(mp, "boot.py");
    if (st.mode === "friendly") runFile(mp, "main.py");
    const keep = st.capture;
    if (st.mode === "raw") st.capture = []; // the friendly banner of replInit is not shown
    mp.replInit();
    st.capture = keep;
    if (st.mode === "raw") {
        mp.replProcessChar(1); // prints the raw REPL banner and prompt
        st.rawEmpty = true;
    }
}

async function softReset() {
    st.resets += 1;
    if (st.hard) {
        // machine.reset(): the chip restarts, so the board comes up in the friendly REPL and
        // runs main.py (the firmware), whatever mode the line was in
        st.hard = false;
        st.mode = "friendly";
        st.paste = null;
        st.ctrlE = 0;
        emitText(ROM_BOOT);
    } else {
        emitText("MPY: soft reboot\r\n");
    }
    await bridgeRef.ops.reset(); // a fresh VM, filesystem copied; setup() hooks it again
    boot(bridgeRef.mp);
}

// One byte into the VM's REPL. Returns true when the REPL asked for a soft reset.
function feed(mp, c) {
    const before = st.capture.length;
    const ret = mp.replProcessChar(c);
    if (st.mode === "raw") {
        if (c === 2) st.mode = "friendly";
        st.rawEmpty = c === 1 || c === 3 || c === 4;
    } else if (c === 1) {
        // Ctrl-A enters the raw REPL only on an empty line: the banner tells
        const said = Buffer.from(st.capture.slice(before)).toString("latin1");
        if (said.includes(RAW_BANNER)) {
            st.mode = "raw";
            st.rawEmpty = true;
        }
    }
    return ret !== 0;
}

async function pasteByte(c) {
    const p = st.paste;
    if (c === 4 || c === 3) {
        st.paste = null;
        emitRaw([4]); // end of data acknowledged
        if (c === 3) {
            emitText("\x04KeyboardInterrupt: \r\n\x04>");
            st.rawEmpty = true;
            return false;
        }
        // run the code as a raw REPL command, without the "OK" a raw command is answered with
        const mp = bridgeRef.mp;
        for (const b of p.code) mp.replProcessChar(b);
        const at = st.capture.length;
        const reset = feed(mp, 4);
        if (st.capture[at] === 79 && st.capture[at + 1] === 75) st.capture.splice(at, 2); // OK
        return reset;
    }
    p.code.push(c);
    p.sinceAck += 1;
    if (p.sinceAck >= PASTE_WINDOW) {
        p.sinceAck = 0;
        emitRaw([1]); // room for another window
    }
    return false;
}

async function typed(data) {
    st.input = data;
    st.inputPos = 0;
    try {
        await typedBytes(data);
    } finally {
        st.input = null;
    }
}

async function typedBytes(data) {
    while (st.inputPos < data.length) {
        const c = data[st.inputPos++];
        if (st.paste) {
            if (await pasteByte(c)) await softReset();
            continue;
        }
        if (st.mode === "raw" && st.rawEmpty) {
            // raw-paste request: Ctrl-E, "A", Ctrl-A
            if (st.ctrlE === 0 && c === 5) { st.ctrlE = 1; continue; }
            if (st.ctrlE === 1 && c === 65) { st.ctrlE = 2; continue; }
            if (st.ctrlE === 2 && c === 1) {
                st.ctrlE = 0;
                st.paste = { code: [], sinceAck: 0 };
                emitRaw([82, 1, PASTE_WINDOW & 0xff, PASTE_WINDOW >> 8]); // "R\x01" + window
                continue;
            }
            if (st.ctrlE) {
                // not a raw-paste request after all: the held bytes are ordinary input
                const held = st.ctrlE === 2 ? [5, 65] : [5];
                st.ctrlE = 0;
                for (const h of held) {
                    if (feed(bridgeRef.mp, h)) await softReset();
                }
            }
        }
        if (feed(bridgeRef.mp, c)) await softReset();
    }
}

async function withCapture(fn) {
    st.capture = [];
    try {
        await fn();
        return mapErrno(Buffer.from(st.capture));
    } finally {
        st.capture = null;
    }
}

export function setup({ mp, ops, bridge }) {
    bridgeRef = bridge;
    hookInput(mp);
    hookOutput(mp);
    mp.registerJsModule("simboard", {
        hard_reset() {
            st.hard = true;
        },
    });
    if (ops.repl) return; // ops survive VM re-creation
    ops.repl_boot = async () => {
        const payload = await withCapture(async () => boot(bridgeRef.mp));
        return { header: { mode: st.mode, resets: st.resets }, payload };
    };
    ops.repl = async (h, data) => {
        const payload = await withCapture(async () => typed(data));
        return { header: { mode: st.mode, resets: st.resets }, payload };
    };
}
