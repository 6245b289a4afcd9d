// Plugin for sim/vm/mpvm_bridge.mjs (loaded by sim/vm/runtime.py): gives the MicroPython VM a
// module `simhost` whose link(hex) call blocks until the host answers. A POS running in the
// VM reads its card through it: each APDU goes out to the Python host (where the virtual
// NFC field and the card live) and the answer comes back, synchronously, while the VM's
// exec request is still running.
//
// Out: {"cb": "link", "apdu": hex}; in: {"resp": hex} or {"error": text}
// (framing: sim/vm/mpvm_host_call.mjs). link() returns the response as hex, or "!" + text when
// the link failed.
import { callHost } from "./mpvm_host_call.mjs";

export function setup({ mp }) {
    mp.registerJsModule("simhost", {
        link(hex) {
            const answer = callHost({ cb: "link", apdu: hex });
            if (typeof answer.resp === "string") return answer.resp;
            return "!" + String(answer.error || "link");
        },
    });
}
