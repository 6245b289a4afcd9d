# The wallet (card) application: an APDU dispatcher over one module per command.
#
#   app = WalletApp(hal)          # hal.flash and hal.rng required; hal.clock, hal.display optional
#   resp = app.process(apdu)      # bytes in, data || SW1 SW2 out; never raises, except PowerCut
#   app.power_on()                # field on / reboot: new session (and journal recovery)
#
# process() only parses the APDU, routes (CLA, INS) to a handler module *name*, imports it
# and, on a fixed heap, releases it and the app modules it pulled in once it has run
# (runtime.release: flash, not RAM, holds the code of the commands not running). Handlers
# (`def handle(app, p1, p2, data) -> bytes`) raise apdu.ApduError for a refusal; any other
# exception becomes 6F00. Neither changes the persistent state: handlers build the new state
# as a copy and call app.commit() once, at the end. hal.PowerCut (the simulated flash lost
# power) is the one exception that leaves process(): the device is off, its RAM is gone.
# A handler whose commit decides the command passes its answer to commit(answer=...): from
# then on the command answers 9000 with it, whatever fails after (the screen, the journal
# record it owes, releasing its modules, out of RAM): PROTOCOL.md §3.1. Only PAY commits
# before it has its answer (the signature), so a failure there is 6F00 after a commit (§4.1).
#
# Journal records are appended AFTER the state commit that decides a command. The state
# names the record it owes (S_OUT_SEQ, S_OUT): if the append was lost (power cut, flash
# error) it is appended again on the next power_on() or before the next record.
from ..core import apdu, envelope, fields
from ..core.apdu import ApduError
from ..core.hal import PowerCut
from ..core.runtime import collect, release, resident
from ..core.storage import Journal, StateStore, StorageFull
from ..core.units import now
from . import state as st

_CORE = __name__[: __name__.rfind(".wallet.")] + ".core."
_PKG = __name__[: __name__.rfind(".") + 1]  # "firmware.wallet."

# The routes, one per 17 bytes: INS, CLA, P1, P2, the handler module's name (13 bytes, spaces
# after it). A bytes constant is read in place from flash on a board (ROMFS, frozen); the dict
# of tuples it replaces was about 1 KB of heap for as long as the card ran (#13).
# tests/firmware/test_firmware_shape.py checks it against the protocol's INS constants.
_ROUTES = (
    b"\xa4\x00\x04\x00select_app   "  # INS_SELECT
    b"\xca\x80\x00\x00get_info     "  # INS_GET_INFO
    b"\x20\x00\x00\x80verify_pin   "  # INS_VERIFY_PIN
    b"\x2c\x00\x00\x80reset_retry  "  # INS_RESET_RETRY
    b"\x50\x80\x00\x00pay          "  # INS_PAY
    b"\x52\x80\x00\x00receipt      "  # INS_RECEIPT
    b"\x54\x80\x00\x00get_last     "  # INS_GET_LAST
    b"\x84\x00\x00\x00get_challenge"  # INS_CHALLENGE
    b"\x56\x80\x00\x00receive      "  # INS_RECEIVE
    b"\x58\x80\x00\x00load         "  # INS_LOAD
    b"\x60\x80\x00\x00export       "  # INS_EXPORT
    b"\x62\x80\x00\x00ack          "  # INS_ACK
    b"\x64\x80\x00\x00apply        "  # INS_APPLY
    b"\xe0\x80\x00\x00perso_keygen "  # INS_PERSO_KEYGEN
    b"\xe2\x80\x00\x00perso_finish "  # INS_PERSO_FINISH
)

JOURNAL_RECORDS = 64  # PROTOCOL.md §6
# record bytes per EXPORT response (at least one record is always sent); 1500, not 3000: the
# page's one buffer is the purse day's largest block on a fragmented ROMFS heap (#13)
EXPORT_BYTES = 1500


class WalletApp:
    """One wallet card. `config` (optional dict): journal_records, export_bytes, visual (bool,
    default: a display other than the no-op hal.Display is present), state_name, journal_name."""

    _key = None  # ed25519.signing_key of the card's seed, once it has signed (sign_payment)
    tables = False  # build the issuer keys' tables once this command is done (load.py)

    def __init__(self, hal, config=None):
        cfg = config or {}
        self.hal = hal
        self.journal_max = cfg.get("journal_records", JOURNAL_RECORDS)
        self.export_bytes = cfg.get("export_bytes", EXPORT_BYTES)
        self.visual = bool(cfg.get("visual", False))  # configured: main.py from the profile
        self._state_name = cfg.get("state_name", "wallet")
        self._journal_name = cfg.get("journal_name", "wjournal")
        self.store = None
        self.journal = None
        self.state = None
        self.done = None  # the response of this command once its commit decided it
        self.power_on()
        self._core = resident(_CORE)
        self._resident = resident(_PKG)  # handler modules imported later are released

    # ---- session -------------------------------------------------------------------------
    def power_on(self):
        """Start a new session (not selected, PIN not verified) from what the flash holds,
        and append a journal record the last command committed but did not get to write.

        The state is read at every tap (decoded anew, where the heap has room for it). The
        journal is opened once: a card that kept its RAM since the last tap (a board's loop
        serves every tap with one app) keeps its Journal, which knows what its blobs hold, as
        this app is their only writer, unless one of its writes failed or was cut (current()
        is then False, and it is opened again)."""
        self.selected = False
        self.pin_ok = False
        self.state = None
        j = self.journal
        if j is None or j.flash is not self.hal.flash or not j.current():
            self.journal = j = None
        self.store = StateStore(self.hal.flash, self._state_name)
        self.state = st.load(self.store)
        if j is None:
            self.journal = Journal(
                self.hal.flash, self._journal_name, self.journal_max, link=envelope.journal_link
            )
        self.catch_up(False)

    def process(self, command):
        collect()  # the last command's garbage goes before this one's long-lived objects
        self.done = None
        self.tables = False
        try:
            cla, ins, p1, p2, data, _le = apdu.parse_command(command)
            name = self._route(cla, ins, p1, p2)
            try:
                out = __import__(_PKG + name, None, None, ("handle",)).handle(self, p1, p2, data)
            finally:  # its modules go (Trezor's pattern): the next command has their heap
                self.store.free()
                release(_PKG, self._resident)
                release(_CORE, self._core)
            if self.tables:  # a purse's LOAD: its keys' tables, in the heap it has left (#13)
                self.tables = False
                collect()
                try:
                    __import__(_PKG + "tables", None, None, ("build",)).build(self)
                finally:
                    release(_PKG, self._resident)
                    release(_CORE, self._core)
            return self.done or apdu.response(out or b"")
        except PowerCut:
            raise
        except ApduError as e:
            return self.done or apdu.response(b"", e.sw)
        except MemoryError:  # out of RAM: refuse (not a bug), the state is the committed one
            return self.done or apdu.response(b"", apdu.SW_NO_RAM)
        except Exception:  # a bug: refuse, the state is the committed one
            return self.done or apdu.response(b"", apdu.SW_INTERNAL)

    def _route(self, cla, ins, p1, p2):
        if cla != apdu.CLA_ISO and cla != apdu.CLA_PROP:
            raise ApduError(apdu.SW_CLA)
        r = _ROUTES
        i = 0
        while i < len(r) and r[i] != ins:
            i += 17
        if i >= len(r) or r[i + 1] != cla:
            raise ApduError(apdu.SW_INS)
        if p1 != r[i + 2] or p2 != r[i + 3]:
            raise ApduError(apdu.SW_WRONG_P1P2)
        if ins != apdu.INS_SELECT and not self.selected:
            raise ApduError(apdu.SW_CONDITIONS)
        return r[i + 4 : i + 17].decode().rstrip()

    # ---- state ---------------------------------------------------------------------------
    def need_perso(self):
        """The state of a personalised wallet, or 6985."""
        s = self.state
        if s[st.S_PHASE] != st.PHASE_PERSO:
            raise ApduError(apdu.SW_CONDITIONS)
        return s

    def commit(self, new, answer=None):
        """Durably make `new` the state: the decision point of a command.
        A flash failure other than a power cut is 6581 with the old state kept. `answer`
        (bytes): the command's response data, decided by this commit: the command answers
        9000 with it from here on, whatever fails after (built before the commit: nothing
        after it needs RAM for the answer)."""
        resp = None if answer is None else apdu.response(answer)
        try:
            self.store.commit_obj(new, st.encode)
        except PowerCut:
            raise
        except MemoryError:  # RAM, not flash: the flash holds the old state
            raise ApduError(apdu.SW_NO_RAM) from None
        except Exception:
            raise ApduError(apdu.SW_MEMORY) from None
        self.state = new
        self.done = resp

    def owe(self, new, record):
        """Make `new` owe the next journal record: `record` bytes, or None for the payment
        record rebuilt from new[S_LAST_BODY]. Refuses (6A84) when the journal is full."""
        self.catch_up(True)
        if self.journal.free() < 1:
            raise ApduError(apdu.SW_FULL)
        new[st.S_OUT_SEQ] = self.journal.last_seq + 1
        if record is None:
            new.pop(st.S_OUT, None)
        else:
            new[st.S_OUT] = record

    def catch_up(self, strict, record=None):
        """Append the record the committed state owes, if the journal lacks it. `record` is
        that record when the caller has it at hand (saves re-signing a payment). strict:
        raise 6581 / 6A84 when it cannot be appended; otherwise leave it owed."""
        s = self.state
        seq = s.get(st.S_OUT_SEQ, 0)
        j = self.journal
        try:
            if not j.current():  # an append that reported an error may have landed: read
                j.count()  # the blobs again, or the record would be journaled twice
            if j.last_seq != seq - 1:  # nothing owed (or records lost: nothing to do here)
                return
            if record is None:
                record = s.get(st.S_OUT)
                if record is None:
                    record = self.payment_record(self.sign_payment(s[st.S_LAST_BODY]))
            j.append(record)
        except PowerCut:
            raise
        except StorageFull:
            if strict:
                raise ApduError(apdu.SW_FULL) from None
        except MemoryError:
            if strict:
                raise ApduError(apdu.SW_NO_RAM) from None
        except Exception:
            if strict:
                raise ApduError(apdu.SW_MEMORY) from None

    # ---- helpers for handlers ------------------------------------------------------------
    def release_core(self):
        """Forget the core modules this command has imported so far (a signature's, mostly)
        and collect, so what the command does next has their heap (a fixed heap only)."""
        release(_CORE, self._core)
        collect()

    def modules(self):
        """A mark of the modules imported so far, for release_since (None parts off a fixed
        heap, where nothing is released)."""
        return resident(_CORE), resident(_PKG)

    def release_since(self, mark):
        """Forget the modules imported since `mark` (modules()) and collect: what the command
        does next has their heap (a fixed heap only)."""
        release(_CORE, mark[0])
        release(_PKG, mark[1])
        collect()

    def now(self):
        return now(self.hal.clock)

    def sign_payment(self, body_bytes):
        from ..core import cbor, ed25519

        s = self.state
        seed = s[st.S_SEED]
        key = self._key
        if key is None or key[0] != seed:
            # Kept on the app, not in ed25519 (released after each command on a board, its
            # cache shared with any other signer): a payment derives no key; the first one
            # after a reboot hashes the seed once (the card holds its public key).
            key = self._key = ed25519.signing_key(seed, s.get(st.S_PUB))
        sig = ed25519.sign(seed, envelope.TAG_PAYMENT + body_bytes, key)
        return cbor.encode([body_bytes, sig])

    def seal(self, tag, body):
        return envelope.seal(tag, body, self.state[st.S_SEED])

    @staticmethod
    def payment_record(env):
        from ..core import cbor

        return cbor.encode({fields.REC_TYPE: fields.RT_PAYMENT, fields.REC_SIGNED: env})

    def issuer_keys(self, keys=None):
        """{key id: public key} of the trusted issuer keys (the state's, or `keys`)."""
        out = {}
        for pk in keys if keys is not None else self.state[st.S_ISSUERS]:
            out[envelope.key_id(pk)] = pk
        return out

    def open_issued(self, tag, data):
        """(body, envelope bytes) of an envelope signed by one of the trusted issuer keys
        (vouchers, updates and acks carry no key id: each key is tried). 6988 otherwise."""
        from ..core import ed25519  # noqa: F401  the verifier before the command's objects (#16)

        env = envelope_bytes(data)
        body_bytes, body, sig = envelope.open_envelope(env)
        msg = tag + body_bytes
        keys = self.state[st.S_ISSUERS]
        table = None
        if self.state.get(st.S_PURSES):  # a purse card has its issuer keys' tables (tables.py)
            from ..core import comb  # verify then needs less heap than without (#13)

            table = comb.opener(self.hal.flash, keys)
        for pk in keys:
            if envelope.sig_ok(pk, msg, sig, table):
                return body, env
        raise ApduError(apdu.SW_BAD_SIGNATURE)

    def show(self, lines):
        d = self.hal.display
        if d is not None:
            try:
                d.show(lines)
            except PowerCut:
                raise
            except Exception:  # a broken screen must not fail a committed command
                pass

    def offline_left(self, s=None):
        s = s or self.state
        left = s[st.S_LIMITS][fields.LIM_OFFLINE_COUNT] - (s[st.S_COUNTER] - s[st.S_SYNC_COUNTER])
        return left if left > 0 else 0


def decode(data):
    """CBOR-decode command data; 6A80 when malformed."""
    from ..core import cbor

    try:
        return cbor.decode(data)
    except ValueError:
        raise ApduError(apdu.SW_WRONG_DATA) from None


def decode_map(data):
    m = decode(data)
    if not isinstance(m, dict):
        raise ApduError(apdu.SW_WRONG_DATA)
    return m


# an envelope field given as bytes (normal) or as a decoded [body, sig] array: core's, shared
# with the POS and the ledger
envelope_bytes = envelope.envelope_bytes