# PN532 as a card: ISO/IEC 14443-4 type A PICC emulation (SAK 0x20), and the wallet's serve loop.
#
#   pn532 = PN532Card(PN532_I2C(i2c))
#   pn532.begin()
#   serve_card(pn532, wallet_app)   # TgInitAsTarget -> (TgGetData -> process -> TgSetData)* ...
#
# With fISO14443-4_PICC set the chip answers RATS and runs the ISO-DEP blocks itself; the host sees
# whole APDUs (chained in frames of 262 bytes, MI bit). TgGetData / TgSetData answer status 0x29
# once the reader has released us (DESELECT) or gone: the session is over, listen again.
from ..core.runtime import const
from . import sleep_ms
from .pn532 import (
    ERR_FRAME,
    ERR_NO_RESPONSE,
    ERR_TOO_LONG,
    MAX_APDU,
    MAX_DATA,
    MAX_PARTS,
    PN532,
    ST_RELEASED,
    STATUS_MASK,
    STATUS_MI,
    PN532Error,
)

_CMD_TG_GET_DATA = const(0x86)
_CMD_TG_INIT_AS_TARGET = const(0x8C)
_CMD_TG_SET_DATA = const(0x8E)
_CMD_TG_SET_META_DATA = const(0x94)
_PARAM_AUTO_RATS = const(0x10)  # SetParameters (7.2.9) fAutomaticRATS
_PARAM_ISO14443_4_PICC = const(0x20)  # fISO14443-4_PICC: the chip runs ISO-DEP as a card
_MODE_PASSIVE_ONLY = const(0x01)  # TgInitAsTarget mode bits (7.3.14)
_MODE_PICC_ONLY = const(0x04)
ACTIVATED_PICC = const(0x08)  # bit 3 of the activated mode byte: ISO/IEC 14443-4 PICC


class TargetReleased(PN532Error):
    """As a target: the reader released (DESELECT) or left; the session is over."""


class PN532Card(PN532):
    """A PN532 used as a card (the wallet)."""

    def setup_target(self):
        """Let the chip run ISO-DEP as a card (RATS/ATS, blocks, chaining)."""
        self.set_parameters(_PARAM_AUTO_RATS | _PARAM_ISO14443_4_PICC)

    def listen_as_target(self, nfcid, historical=b"", sens_res=b"\x04\x00", sel_res=0x20):
        """Send TgInitAsTarget for ISO/IEC 14443-4 PICC emulation and return once it is ACKed;
        the chip answers when a reader has activated it (see `activated`). `nfcid` is 3 bytes:
        the chip fixes the first UID byte to 0x08 (random UID). Run setup_target() once before."""
        if len(nfcid) != 3 or len(historical) > 48:
            raise ValueError("nfcid is 3 bytes, historical bytes at most 48")
        p = bytearray(37 + len(historical))
        p[0] = _MODE_PASSIVE_ONLY | _MODE_PICC_ONLY
        p[1:3] = sens_res  # MifareParams: SENS_RES (2), NFCID1t (3), SEL_RES
        p[3:6] = nfcid
        p[6] = sel_res
        # p[7:25] FeliCaParams, p[25:35] NFCID3t, p[35] LEN Gt: all zero
        p[36] = len(historical)
        p[37 : 37 + len(historical)] = historical
        self.send(_CMD_TG_INIT_AS_TARGET, p)

    def activated(self, timeout_ms=0):
        """After listen_as_target: None while no reader has activated us, else (mode byte,
        initiator command). With timeout_ms=0 it only looks (non-blocking)."""
        if self.pending != _CMD_TG_INIT_AS_TARGET:
            raise PN532Error(ERR_NO_RESPONSE, "not listening")
        if not timeout_ms and not self.t.ready():
            return None
        r = self.receive(timeout_ms or self.timeout_ms)
        if len(r) < 1:
            raise PN532Error(ERR_FRAME, "no mode")
        return r[0], bytes(r[1:])

    def get_data(self, timeout_ms=None):
        """TgGetData: the next command APDU from the reader (bytes), chained frames (MI) joined.
        Raises TargetReleased when the reader released us or left the field."""
        out = None
        for _ in range(MAX_PARTS):
            r = self.call(_CMD_TG_GET_DATA, timeout_ms=timeout_ms)
            if len(r) < 1:
                raise PN532Error(ERR_FRAME, "no status")
            st = r[0] & STATUS_MASK
            if st == ST_RELEASED:
                raise TargetReleased(st, "released")
            if st:
                raise PN532Error(st, "TgGetData")
            if out is None:
                if not r[0] & STATUS_MI:
                    return bytes(r[1:])
                out = bytearray(r[1:])
            else:
                if len(r) < 2 and r[0] & STATUS_MI:  # an empty part would chain for ever
                    raise PN532Error(ERR_FRAME, "empty chained part")
                if len(out) + len(r) - 1 > MAX_APDU:
                    raise PN532Error(ERR_TOO_LONG, "command too long")
                out += r[1:]
                if not r[0] & STATUS_MI:
                    return bytes(out)
        raise PN532Error(ERR_TOO_LONG, "command in too many parts")

    def set_data(self, data, timeout_ms=None):
        """TgSetData: send our answer; beyond 262 bytes the leading parts go by TgSetMetaData
        (sent with the MI bit). Raises TargetReleased / PN532Error on a bad status."""
        mv = memoryview(data)
        while True:
            last = len(mv) <= MAX_DATA
            cmd = _CMD_TG_SET_DATA if last else _CMD_TG_SET_META_DATA
            r = self.call(cmd, mv[:MAX_DATA], timeout_ms=timeout_ms)
            st = r[0] & STATUS_MASK if len(r) else ERR_FRAME
            if st == ST_RELEASED:
                raise TargetReleased(st, "released")
            if st:
                raise PN532Error(st, "TgSetData")
            if last:
                return
            mv = mv[MAX_DATA:]


def serve_session(pn532, app, timeout_ms=30000):
    """One activated session: TgGetData -> app.process -> TgSetData until the reader releases
    us, leaves, or is silent for timeout_ms. Returns the number of APDUs answered."""
    power_on = getattr(app, "power_on", None)
    if power_on is not None:
        power_on()  # a tap is a new session: nothing selected, PIN not verified
    n = 0
    while True:
        try:
            cmd = pn532.get_data(timeout_ms)
        except PN532Error:
            return n  # released, field gone, timeout (the command was aborted)
        resp = app.process(cmd)
        try:
            pn532.set_data(resp)
        except PN532Error:
            return n
        n += 1


def serve_card(pn532, app, stop=None, idle=None, nfcid=None, rng=None, historical=b"",
               session_timeout_ms=30000, poll_ms=5):  # fmt: skip
    """Card emulation loop for a wallet. Listens (TgInitAsTarget), serves each activation with
    serve_session, listens again. `idle()` runs while no reader is there (e.g. the serial sync
    pump); `stop()` ends the loop. The 3 NFCID bytes are `nfcid`, or fresh per tap from
    `rng(3)` (random UIDs: a tap cannot be linked to the last one by its UID), or 12 34 56.
    Returns the number of sessions served."""
    pn532.setup_target()
    sessions = 0
    while stop is None or not stop():
        uid = nfcid if nfcid is not None else (rng(3) if rng is not None else b"\x12\x34\x56")
        pn532.listen_as_target(uid, historical)
        got = None
        while got is None:
            if stop is not None and stop():
                pn532.abort()
                return sessions
            try:
                got = pn532.activated()
            except PN532Error:
                break  # aborted or garbled: listen again
            if got is None:
                if idle is not None:
                    idle()
                sleep_ms(poll_ms)
        if got is None:
            continue
        sessions += 1
        serve_session(pn532, app, session_timeout_ms)
    return sessions
