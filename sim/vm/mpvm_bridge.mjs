// Host a real MicroPython 1.27 VM (the npm package
// @micropython/micropython-webassembly-pyscript) as a long-lived device, driven over
// stdin/stdout by sim/vm/mpvm.py.
//
// usage: node mpvm_bridge.mjs <vm_dir> [--heapsize BYTES] [--plugin FILE.mjs]... [--answer-fd N]
//
//   --answer-fd N: the host's answers to the VM's synchronous calls come on this descriptor
//   (read by mpvm_host_call.mjs), not on stdin.
//
//   <vm_dir> holds node_modules/ with the pinned package (see ensure_vm_installed()).
//
// Framing, both directions:  u32 header_len | u32 payload_len | header (JSON, UTF-8) | payload
// (big-endian lengths; payload is raw bytes, so files and output are binary safe).
//
// Requests (header.op):
//   exec   {code, result?}  run code in __main__; payload out = console bytes (stdout+stderr).
//                           With `result`, the global of that name (a str) is returned as
//                           header.value and deleted.
//   call   {fn, arg}        call the function fn (a global of __main__, or a dotted path from
//                           one: "mod.func") with the one str argument arg; its result (a str)
//                           is header.value. No code to compile: about 10 us in the VM against
//                           120 us for the same call through exec (measured under Node 20).
//   put    {path}           payload in = file bytes; parent folders are created.
//   get    {path}           payload out = file bytes.
//   mkdir  {path}           mkdir -p.
//   rmtree {path}           remove a file or a folder tree (absent is fine).
//   reset  {}               soft reset: a fresh VM (new heap, no modules, empty __main__),
//                           the filesystem carried over as on a real board.
//   ping   {}               header.version = VM version string.
//   quit   {}               answer, then exit.
// Responses: header.ok true, or ok false with type (exception class), error (traceback text).
//
// Plugin hook (for hardware modules): a plugin is an ES module exporting
//   setup({mp, ops, bridge})
// called after every VM (re)creation. It may call mp.registerJsModule(name, obj) to give
// Python a hardware module, and add request handlers to `ops` (op name -> function(header,
// payload) returning {header, payload}).
import { pathToFileURL } from "node:url";
import { join } from "node:path";

// Anything the VM's JS glue logs must never reach the frame channel on stdout.
const toStderr = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");
console.log = toStderr;
console.info = toStderr;
console.warn = toStderr;
console.debug = toStderr;

const PKG = "@micropython/micropython-webassembly-pyscript";

function parseArgs(argv) {
    const opts = { vmDir: null, heapsize: 1024 * 1024, plugins: [] };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === "--plugin") opts.plugins.push(argv[++i]);
        else if (a === "--heapsize") opts.heapsize = parseInt(argv[++i], 10);
        else if (a === "--answer-fd") opts.answerFd = parseInt(argv[++i], 10);
        else if (opts.vmDir === null) opts.vmDir = a;
        else throw new Error("unexpected argument: " + a);
    }
    if (opts.vmDir === null) throw new Error("usage: mpvm_bridge.mjs <vm_dir> [--plugin F]...");
    return opts;
}

const opts = parseArgs(process.argv.slice(2));
const entry = join(opts.vmDir, "node_modules", PKG, "micropython.mjs");
const { loadMicroPython } = await import(pathToFileURL(entry).href);
const plugins = [];
for (const p of opts.plugins) plugins.push(await import(pathToFileURL(p).href));

// Console bytes of the current request, stdout and stderr interleaved as on a serial console.
let out = [];
const sink = (b) => { out.push(b[0]); };

const bridge = { mp: null, ops: null, opts };
let fns = new Map(); // call's functions by name, for the current VM

class OpError extends Error {
    constructor(type, message) { super(message); this.type = type; }
}

async function createVM() {
    const mp = await loadMicroPython({
        heapsize: opts.heapsize, stdout: sink, stderr: sink, linebuffer: false,
    });
    bridge.mp = mp;
    fns = new Map();
    for (const p of plugins) if (p.setup) await p.setup({ mp, ops, bridge });
    return mp;
}

const SKIP_TOP = new Set(["/dev", "/proc"]);

function copyTree(srcFS, dstFS, dir) {
    for (const name of srcFS.readdir(dir)) {
        if (name === "." || name === "..") continue;
        const path = dir === "/" ? "/" + name : dir + "/" + name;
        if (SKIP_TOP.has(path)) continue;
        const st = srcFS.stat(path);
        if (srcFS.isDir(st.mode)) {
            try { dstFS.mkdir(path); } catch { /* exists */ }
            copyTree(srcFS, dstFS, path);
        } else if (srcFS.isFile(st.mode)) {
            dstFS.writeFile(path, srcFS.readFile(path));
        }
    }
}

function mkdirp(FS, path) {
    let cur = "";
    for (const part of path.split("/")) {
        if (!part) continue;
        cur += "/" + part;
        try { FS.mkdir(cur); } catch (e) {
            if (!FS.isDir(FS.stat(cur).mode)) throw new OpError("OSError", "not a directory: " + cur);
        }
    }
}

function removeTree(FS, path) {
    if (FS.isDir(FS.stat(path).mode)) {
        for (const name of FS.readdir(path)) {
            if (name !== "." && name !== "..") removeTree(FS, path + "/" + name);
        }
        FS.rmdir(path);
    } else {
        FS.unlink(path);
    }
}

function parentOf(path) {
    const i = path.lastIndexOf("/");
    return i <= 0 ? "/" : path.slice(0, i);
}

const EMPTY = Buffer.alloc(0);

const ops = {
    exec(h) {
        const mp = bridge.mp;
        mp.runPython(h.code);
        if (h.result) {
            const value = mp.globals.get(h.result);
            mp.globals.delete(h.result);
            return { header: { value } };
        }
        return { header: {} };
    },
    call(h) {
        let fn = fns.get(h.fn);
        if (fn === undefined) {
            const [first, ...rest] = h.fn.split(".");
            fn = bridge.mp.globals.get(first);
            for (const name of rest) fn = fn[name];
            fns.set(h.fn, fn);
        }
        const value = fn(h.arg);
        return { header: typeof value === "string" ? { value } : {} };
    },
    put(h, payload) {
        const FS = bridge.mp.FS;
        mkdirp(FS, parentOf(h.path));
        FS.writeFile(h.path, payload);
        return { header: {} };
    },
    get(h) {
        return { header: {}, payload: Buffer.from(bridge.mp.FS.readFile(h.path)) };
    },
    mkdir(h) {
        mkdirp(bridge.mp.FS, h.path);
        return { header: {} };
    },
    rmtree(h) {
        const FS = bridge.mp.FS;
        if (FS.analyzePath(h.path).exists) removeTree(FS, h.path);
        return { header: {} };
    },
    async reset() {
        const oldFS = bridge.mp.FS;
        const mp = await createVM();
        copyTree(oldFS, mp.FS, "/");
        return { header: {} };
    },
    ping() {
        out = [];
        bridge.mp.runPython("import sys as _s\n_mpvm_v = '%d.%d.%d' % _s.implementation.version[:3]\ndel _s");
        const version = bridge.mp.globals.get("_mpvm_v");
        bridge.mp.globals.delete("_mpvm_v");
        return { header: { version } };
    },
    quit() {
        setImmediate(() => process.exit(0));
        return { header: {} };
    },
};
bridge.ops = ops;

function send(header, payload) {
    const h = Buffer.from(JSON.stringify(header), "utf8");
    const p = payload || EMPTY;
    const lens = Buffer.allocUnsafe(8);
    lens.writeUInt32BE(h.length, 0);
    lens.writeUInt32BE(p.length, 4);
    process.stdout.write(Buffer.concat([lens, h, p]));
}

async function handle(header, payload) {
    const fn = ops[header.op];
    let res;
    try {
        if (!fn) throw new OpError("BridgeError", "unknown op: " + header.op);
        res = fn(header, payload);
        if (res instanceof Promise) res = await res;
    } catch (e) {
        const type = e.name === "PythonError" ? e.type : (e.type || e.name || "Error");
        const error = e.name === "PythonError" ? e.message : String(e && e.stack || e);
        const console_ = out.length ? Buffer.from(out) : EMPTY;
        out = [];
        send({ ok: false, type, error }, console_);
        return;
    }
    const h = res.header || {};
    h.ok = true;
    let p = res.payload;
    if (!p) { p = out.length ? Buffer.from(out) : EMPTY; }
    out = [];
    send(h, p);
}

// Frame reader: requests are handled strictly one after another.
let chunks = [];
let buffered = 0;
let busy = false;

function take(n) {
    const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const head = all.subarray(0, n);
    const rest = all.subarray(n);
    chunks = rest.length ? [rest] : [];
    buffered = rest.length;
    return head;
}

async function pump() {
    if (busy) return;
    busy = true;
    try {
        for (;;) {
            if (buffered < 8) break;
            const first = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
            chunks = [first];
            const hl = first.readUInt32BE(0);
            const pl = first.readUInt32BE(4);
            if (buffered < 8 + hl + pl) break;
            const frame = take(8 + hl + pl);
            const header = JSON.parse(frame.subarray(8, 8 + hl).toString("utf8"));
            const payload = frame.subarray(8 + hl);
            await handle(header, payload);
        }
    } finally {
        busy = false;
    }
}

await createVM();
process.stdin.on("data", (chunk) => {
    chunks.push(chunk);
    buffered += chunk.length;
    pump();
});
process.stdin.on("end", () => process.exit(0));
send({ ok: true, ready: true }, EMPTY);
