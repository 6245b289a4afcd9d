# The POS (terminal) app: its state, life cycle and commits, and its two faces.
#
#   - reader side (NFC): `take_payment(amount)` runs the payment flow of docs/PROTOCOL.md §4
#     over hal.link (pay.py); `precheck`, `read_amount` (keypad.py) serve the sale loop, which
#     is pos/loop.py (Terminal: firmware/main.py and the simulator's checkout drive it);
#   - device side (serial, sync tool): `process(apdu)` answers SELECT, GET INFO, EXPORT, ACK,
#     APPLY and PERSO (§3.4). `process` only dispatches, as the wallet's does: a table keyed
#     by the INS constants names one handler module per command (the same names as the
#     wallet's), imported when its command comes and released after it on a fixed heap.
#
# Every command error is a status word with the persistent state unchanged; hal.PowerCut
# (the simulator's power cut) always propagates: the app object is dead after it, a new one
# on the same flash recovers in power_on().
from ..core import apdu, envelope, fields
from ..core.hal import PowerCut
from ..core.runtime import collect, release, resident
from ..core.storage import Journal, StateStore
from ..core.units import now
from . import state as st
from .certs import CertCache

CERT_CACHE_ENTRIES = 8
_CORE = __name__[: __name__.rfind(".pos.")] + ".core."
_PKG = __name__[: __name__.rfind(".") + 1]  # "firmware.pos."


# INS -> (CLA, handler module): one module per command, named as the wallet's, imported when
# its command comes and released after it on a fixed heap. P1 P2 must be 00 00 except for
# SELECT, whose handler checks them.
_ROUTES = {
    apdu.INS_SELECT: (apdu.CLA_ISO, "select_app"),
    apdu.INS_GET_INFO: (apdu.CLA_PROP, "get_info"),
    apdu.INS_EXPORT: (apdu.CLA_PROP, "export"),
    apdu.INS_ACK: (apdu.CLA_PROP, "ack"),
    apdu.INS_APPLY: (apdu.CLA_PROP, "apply"),
    apdu.INS_PERSO_KEYGEN: (apdu.CLA_PROP, "perso_keygen"),
    apdu.INS_PERSO_FINISH: (apdu.CLA_PROP, "perso_finish"),
}


def _route(cla, ins, p1, p2):
    """The handler module name of a command, or the ApduError that refuses it."""
    if cla != apdu.CLA_ISO and cla != apdu.CLA_PROP:
        raise apdu.ApduError(apdu.SW_CLA)
    r = _ROUTES.get(ins)
    if r is None or r[0] != cla:
        raise apdu.ApduError(apdu.SW_INS)
    if (p1 or p2) and ins != apdu.INS_SELECT:
        raise apdu.ApduError(apdu.SW_WRONG_P1P2)
    return r[1]


class PosApp:
    """A POS terminal on a Hal (flash, clock, rng, link; display, keys, signal optional).

    `config` is a map of proto.CFG_* values over fields.DEFAULT_POS_CONFIG (the board's
    defaults); a config personalised by PERSO FINISH takes precedence over both.
    """

    def __init__(self, hal, config=None):
        self.hal = hal
        self.base_config = config or {}
        self.cf = None
        self.rt = None
        self.rt_saved = None
        self.journal = None
        self.certs = None
        self.on = False
        self.done = None  # the response of this serial command once its commit decided it
        self._key = None  # ed25519.signing_key(seed, rfc) of the POS's seed, once it has signed
        self._core = resident(_CORE)
        self._resident = resident(_PKG)  # command and payment modules imported later go

    # ---- life cycle --------------------------------------------------------------------
    def power_on(self):
        """Load the committed state and bring the run state up to date with the journal."""
        flash = self.hal.flash
        self.cf_store = StateStore(flash, st.CF_NAME)
        self.rt_store = StateStore(flash, st.RT_NAME)
        self.cf = st.load_map(self.cf_store, {st.C_PHASE: st.PHASE_BLANK})
        self.rt = st.load_map(self.rt_store, st.new_run())
        self.rt_saved = self.rt
        self._derive()
        self.journal = Journal(
            flash, st.JOURNAL_NAME, self.config[fields.CFG_JOURNAL_MAX], link=envelope.journal_link
        )
        self._replay()
        self.on = True
        return self

    def _derive(self):
        """RAM-only views of the config store (never persisted separately)."""
        cf = self.cf
        self.config = st.effective_config(self.base_config, cf.get(st.C_CONFIG))
        self.certs = CertCache(CERT_CACHE_ENTRIES)
        self.rules = None  # purse rules verified (certs.RuleCache), made at the first use
        self.issuer_keys = {}
        self.pos_id = None
        self.merchant_id = None
        self.hot = None
        if cf[st.C_PHASE] != st.PHASE_PERSO:
            return
        for pk in cf[st.C_ISSUERS]:
            self.issuer_keys[envelope.key_id(pk)] = pk
        _b, cert, _s = envelope.open_envelope(cf[st.C_CERT])
        self.cert = cert
        self.pos_id = cert[fields.CERT_ID]
        self.merchant_id = cert.get(fields.CERT_MERCHANT)
        self.public_key = cf[st.C_PUB]
        if st.C_HOTLIST in cf:
            self.hot = st.parse_hotlist(cf[st.C_HOTLIST], None)

    def _replay(self):
        """Fold in the journal records the committed run state does not reflect yet (the
        payments since its last write), then commit it if that changed anything."""
        applied = self.rt[st.R_APPLIED]
        if self.journal.last_seq <= applied or self.cf[st.C_PHASE] != st.PHASE_PERSO:
            return
        rt = self.rt
        for seq, rec in self.journal.records(applied):
            wallet, counter, challenge, amount, time = st.record_facts(rec)
            rt = self.run_after_payment(rt, seq, wallet, counter, challenge, amount, time)
        self.commit_run(rt)

    def run_after_payment(self, rt, seq, wallet, counter, challenge, amount, time):
        """The run state once payment `seq` is journaled (a new map)."""
        rt = dict(rt)
        rt[st.R_APPLIED] = seq
        table_max = self.config[fields.CFG_TABLE_MAX]
        rt[st.R_TABLE] = st.table_record(
            rt[st.R_TABLE], wallet, counter, st.day_of(time), amount, table_max
        )
        rt[st.R_TORN] = st.torn_without(rt[st.R_TORN], wallet, challenge)
        version = self.hot[0] if self.hot else 0
        if rt[st.R_HOT_VERSION] != version:
            rt[st.R_HOT_VERSION] = version
            rt[st.R_HOT_PAYMENTS] = 0
        rt[st.R_HOT_PAYMENTS] += 1
        return rt

    def _reload(self):
        try:
            self.power_on()
        except PowerCut:
            raise
        except Exception:
            self.on = False

    # ---- commits: write, then adopt; a failed write leaves RAM as it was ------------------
    def _commit(self, store, obj):
        from ..core import cbor

        try:
            store.commit(cbor.encode(obj))
        except PowerCut:
            raise
        except MemoryError:  # RAM, not flash: the flash holds the old state
            raise apdu.ApduError(apdu.SW_NO_RAM) from None
        except Exception:
            raise apdu.ApduError(apdu.SW_MEMORY) from None

    def commit_config(self, cf, answer=None):
        """`answer` (bytes): the serial command's response data, decided by this commit (it
        answers 9000 with it whatever fails after, see process)."""
        resp = None if answer is None else apdu.response(answer)
        self._commit(self.cf_store, cf)
        self.done = resp
        self.cf = cf
        self._derive()
        if self.journal is not None:
            self.journal.max_records = self.config[fields.CFG_JOURNAL_MAX]

    def commit_run(self, rt):
        self._commit(self.rt_store, rt)
        self.rt = rt
        self.rt_saved = rt

    def flush(self):
        """Commit the run state if RAM is ahead of flash (payments journaled since)."""
        if self.rt is not self.rt_saved:
            self.commit_run(self.rt)

    # ---- derived facts -----------------------------------------------------------------
    @property
    def personalised(self):
        return self.cf is not None and self.cf[st.C_PHASE] == st.PHASE_PERSO

    def hot_payments(self):
        version = self.hot[0] if self.hot else 0
        if self.rt[st.R_HOT_VERSION] != version:
            return 0
        return self.rt[st.R_HOT_PAYMENTS]

    def hot_stale(self, now):
        """True when offline acceptance must be refused: no hot list, one older than the
        max age by this POS's clock (unknown clock: age not judged), or the max number of
        payments taken under it."""
        if self.hot is None:
            return True
        if now and now - self.hot[1] > self.config[fields.CFG_HOT_MAX_AGE_S]:
            return True
        return self.hot_payments() >= self.config[fields.CFG_HOT_MAX_PAYMENTS]

    def now(self):
        return now(self.hal.clock)

    def sign(self, tag, body):
        """The envelope of body under this POS's key, RFC 8032's signature bytes (receipts and
        statuses, as PyNaCl makes them), from the expanded key kept on the app: a signature
        derives no key (ed25519 and its one-seed cache are released between commands on a
        board); the first one after a boot or a new key hashes the seed once (cf holds its
        public key)."""
        from ..core import ed25519

        seed = self.cf[st.C_SEED]
        key = self._key
        if key is None or key[0] != seed:
            key = self._key = ed25519.signing_key(seed, self.cf.get(st.C_PUB), True)
        return envelope.seal(tag, body, seed, key)

    # ---- serial side ---------------------------------------------------------------------
    def process(self, command):
        """One command APDU in, one response APDU (data || SW) out. Never raises, except
        hal.PowerCut."""
        release(_PKG, self._resident)  # the reader flow's modules, when a sale ran last
        release(_CORE, self._core)
        collect()  # the last command's garbage goes before this one's long-lived objects
        self.done = None
        try:
            if not self.on:
                self.power_on()
            cla, ins, p1, p2, data, _le = apdu.parse_command(command)
            name = _route(cla, ins, p1, p2)
            try:
                out = __import__(_PKG + name, None, None, ("handle",)).handle(self, p1, p2, data)
            finally:  # its modules go: the next command (or payment) has their heap
                release(_PKG, self._resident)
                release(_CORE, self._core)  # and the core modules they imported
            return self.done or apdu.response(out or b"")
        except PowerCut:
            raise
        except Exception as e:
            if self.done is not None:
                # The commit decided the command (APPLY): it answers 9000 whatever failed
                # after (PROTOCOL.md §3.1); RAM falls back to what flash holds, that commit.
                self._reload()
                return self.done
            if isinstance(e, apdu.ApduError):
                return apdu.response(b"", e.sw)
            if isinstance(e, MemoryError):  # out of RAM, not a bug: the state is the committed one
                return apdu.response(b"", apdu.SW_NO_RAM)
            # A bug, not an input error: report it and fall back to what flash holds.
            self._reload()
            return apdu.response(b"", apdu.SW_INTERNAL)

    # ---- reader side ---------------------------------------------------------------------
    # The reader flow (pay.py, and rules.py / keypad.py when a sale needs them) is imported
    # at the first sale and stays for the next ones; the first serial command releases it
    # (a sync does not need it, and its EXPORT needs the room).
    def precheck(self, amount):
        """Reason the POS would refuse `amount` before any card taps (None: go ahead)."""
        from . import pay

        return pay.precheck(self, amount, self.now())

    def take_payment(self, amount, pin=None):
        """Run one payment with the card in the field; returns a pay.PaymentResult."""
        from . import pay

        collect()
        if not self.on:
            self.power_on()
        return pay.take_payment(self, amount, pin)

    def read_amount(self, timeout_ms=30000):
        """Amount in minor units typed on the keypad ('#' enter, '*' clear / cancel), or None."""
        from . import keypad

        return keypad.read_amount(self.hal, timeout_ms)

    def sale(self, timeout_ms=30000):
        """Keypad amount, then a payment: the terminal's main step. None when cancelled."""
        amount = self.read_amount(timeout_ms)
        if amount is None:
            return None
        return self.take_payment(amount)
