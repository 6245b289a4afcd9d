// Plugin for sim/vm/mpvm_bridge.mjs (loaded by sim/vm/runtime.py): gives the MicroPython VM a
// module `hostcrypto`, the host side of the firmware's Ed25519 backend "host"
// (firmware/core/ed25519_vmhost.py). call(op, a_hex, b_hex) returns the result as hex, or
// "!" + text when it failed (a signature that does not verify, a malformed key).
//
//   sha512        SHA-512 of a, answered here (Node's OpenSSL): no round trip to the host
//   seed_keypair  libsodium's 64-byte secret key (seed || public) of the seed a
//   sign          the 64-byte signature of a under the secret key b
//   open          a (signature || message) checked against the public key b: the message
//   base_noclamp  a (32-byte scalar, not clamped) times the base point
//
// All but sha512 go to the Python host: {"cb": "crypto", "op", "a", "b"} out, {"r": hex} or
// {"error": text} in (framing: sim/vm/mpvm_host_call.mjs), where PyNaCl answers
// (sim/vm/runtime.py), so the VM's devices use the same libsodium calls as CPython's.
import { createHash } from "node:crypto";
import { callHost } from "./mpvm_host_call.mjs";

export function setup({ mp }) {
    mp.registerJsModule("hostcrypto", {
        call(op, a, b) {
            if (op === "sha512") {
                return createHash("sha512").update(Buffer.from(a, "hex")).digest("hex");
            }
            const answer = callHost({ cb: "crypto", op, a, b });
            if (typeof answer.r === "string") return answer.r;
            return "!" + String(answer.error || "crypto");
        },
    });
}
