# The reader flow of one payment (docs/PROTOCOL.md §4, §4.1, §5.2):
#
#   SELECT -> INFO -> certificate (cached), torn-log match? -> recovery: re-send the same PAY
#                                                           -> fresh: hot list, counter table,
#                                                              floor / velocity / card limits, CVM,
#                                                              torn entry durable (write 1)
#   PAY -> verify the payment envelope field by field (and an earmarked part against its
#          purse rule, §4.2) -> journal (write 2) -> RECEIPT
#
# A link failure before the payment envelope is verified leaves the torn entry (status "torn");
# anything wrong with a complete answer is a decline with nothing journaled. Nothing here
# raises except hal.PowerCut (the simulated power loss).
from ..core import apdu, cbor, check, envelope, fields
from ..core.hal import LinkError, PowerCut
from ..core.units import money
from . import state as st

APPROVED = "approved"
DECLINED = "declined"
TORN = "torn"


_SELECT = apdu.build_command(apdu.CLA_ISO, apdu.INS_SELECT, 4, 0, apdu.AID)


class PaymentResult:
    """Outcome of take_payment. `reason` is "ok" / "recovered" when approved, else a short code:
    pos_blank, amount, journal_full, floor_limit, hotlist_stale, link, no_app, bad_info,
    card_blank, cert_invalid, cert_expired, revoked, counter, velocity, over_payment_max,
    offline_count, offline_amount, pin_required, pin_wrong, pin_blocked, funds, card_full,
    card_refused, bad_payment, purse_rule, purse, memory, no_ram (this POS ran out of RAM
    checking a signature), card_no_ram (the card answered 6F01)."""

    def __init__(self, status, reason, amount, sw=0):
        self.status = status
        self.reason = reason
        self.amount = amount
        self.sw = sw  # card's status word when it refused, or the POS check's
        self.wallet = None  # wallet id (bytes) once INFO was read
        self.counter = 0  # payment counter when approved
        self.payment = None  # payment envelope bytes (approved)
        self.receipt = None  # receipt envelope bytes (approved)
        self.seq = 0  # POS journal seq (approved)
        self.balance = -1  # wallet balance after the payment, from the signed body
        self.recovered = False  # completed a torn payment of an earlier tap
        self.receipt_sent = False  # the card acknowledged the RECEIPT
        self.tries_left = -1  # PIN tries left after a wrong PIN

    # An earmarked part (set on the instance only when a purse paid: class defaults keep a
    # main-purse result's attribute table small on the device).
    purse = 0  # earmarked purse number that paid part (0: main purse only)
    program = None  # its programme id
    earmarked = 0  # the part it paid
    purse_balance = -1  # that purse's balance after, from the signed body

    @property
    def approved(self):
        return self.status == APPROVED

    def __repr__(self):
        return (
            f"PaymentResult({self.status}, {self.reason}, amount={self.amount}, "
            f"counter={self.counter})"
        )


def _card_reason(sw):
    if sw & 0xFFF0 == 0x63C0:
        return "pin_wrong"
    if sw == apdu.SW_FUNDS:
        return "funds"
    if sw == apdu.SW_OVER_PAYMENT_MAX:
        return "over_payment_max"
    if sw == apdu.SW_OFFLINE_COUNT:
        return "offline_count"
    if sw == apdu.SW_OFFLINE_AMOUNT:
        return "offline_amount"
    if sw == apdu.SW_SECURITY:
        return "pin_required"
    if sw == apdu.SW_PIN_BLOCKED:
        return "pin_blocked"
    if sw == apdu.SW_FULL:
        return "card_full"
    if sw == apdu.SW_EXPIRED:
        return "cert_expired"
    if sw == apdu.SW_REVOKED:
        return "revoked"
    if sw == apdu.SW_PURSE:
        return "purse"
    if sw == apdu.SW_NO_RAM:
        return "card_no_ram"
    return "card_refused"


def precheck(app, amount, now):
    """Why the POS refuses before any card is read, or None."""
    if not app.personalised:
        return "pos_blank"
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        return "amount"
    if app.journal.free() < 1:
        return "journal_full"
    if amount > app.config[fields.CFG_FLOOR]:
        return "floor_limit"
    if app.hot_stale(now):
        return "hotlist_stale"
    return None


def _policy(app, amount, now, wallet, counter, cert, left):
    """Checks of a fresh payment once the card is known (None: go ahead)."""
    why = precheck(app, amount, now)
    if why:
        return why
    if st.is_revoked(app.hot[2], wallet):
        return "revoked"
    entry = st.table_find(app.rt[st.R_TABLE], wallet)
    if entry is not None:
        if counter + 1 <= entry[st.T_COUNTER]:
            return "counter"  # a counter already seen here: cloned card or rolled-back flash
        if now and entry[st.T_DAY] == st.day_of(now):  # no clock, no day: not judged
            if entry[st.T_COUNT] + 1 > app.config[fields.CFG_VELOCITY_COUNT]:
                return "velocity"
            if entry[st.T_AMOUNT] + amount > app.config[fields.CFG_VELOCITY_AMOUNT]:
                return "velocity"
    if amount > cert[fields.CERT_LIMITS][fields.LIM_PAYMENT_MAX]:
        return "over_payment_max"
    if left is not None and left <= 0:
        return "offline_count"
    return None


def _parse_info(data):
    """(wallet id, cert envelope, counter, last challenge or None, offline left or None,
    flags) of a wallet INFO map, or None when it is not one."""
    try:
        info = cbor.decode(data)
    except Exception:
        return None
    if not isinstance(info, dict):
        return None
    if info.get(fields.INFO_VERSION) != apdu.VERSION:
        return None  # another protocol version (or none): PROTOCOL.md §3.2, INFO
    flags = info.get(fields.INFO_FLAGS)
    if not isinstance(flags, int) or isinstance(flags, bool) or flags < 0:
        return None
    if flags & fields.FLAG_BLANK:
        return (None, None, 0, None, None, flags)
    try:
        wallet = check.need_bytes(info, fields.INFO_ID, 8)
        cert = check.need_bytes(info, fields.INFO_CERT)
        counter = check.need_int(info, fields.INFO_COUNTER)
        last = info.get(fields.INFO_LAST_CHALLENGE)
        if last is not None:
            last = check.need_bytes(info, fields.INFO_LAST_CHALLENGE, 16)
        left = info.get(fields.INFO_OFFLINE_LEFT)
        if left is not None:
            left = check.need_int(info, fields.INFO_OFFLINE_LEFT)
    except apdu.ApduError:
        return None
    return (wallet, cert, counter, last, left, flags)


def check_payment(data, key, wallet, counter, amount, payee, challenge, kind):
    """(body bytes, body) of a payment envelope that is exactly the one asked for and signed by
    `key`; raises ApduError otherwise."""
    body_bytes, body, sig = envelope.open_envelope(data)
    if not envelope.sig_ok(key, envelope.TAG_PAYMENT + body_bytes, sig):
        raise apdu.ApduError(apdu.SW_BAD_SIGNATURE)
    if (
        check.need_bytes(body, fields.PAY_WALLET, 8) != wallet
        or check.need_int(body, fields.PAY_COUNTER, 1) != counter
        or check.need_int(body, fields.PAY_AMOUNT, 1) != amount
        or check.need_bytes(body, fields.PAY_PAYEE, 8) != payee
        or check.need_bytes(body, fields.PAY_CHALLENGE, 16) != challenge
        or check.need_int(body, fields.PAY_KIND) != kind
    ):
        raise apdu.ApduError(apdu.SW_DATA_INVALID)
    check.need_bytes(body, fields.PAY_PREV, 32)
    check.need_int(body, fields.PAY_BALANCE)
    check.need_int(body, fields.PAY_TIME)
    return body_bytes, body


class _Flow:
    """One tap: holds what the steps share; each step returns a PaymentResult or None."""

    def __init__(self, app, amount, pin):
        self.app = app
        self.hal = app.hal
        self.amount = amount
        self.pin = pin
        self.now = app.now()
        self.wallet = None

    def result(self, status, reason, sw=0):
        r = PaymentResult(status, reason, self.amount, sw)
        r.wallet = self.wallet
        return r

    def send(self, command):
        """(data, sw) of the card's answer; raises LinkError on a broken or short answer."""
        resp = self.hal.link.transceive(command)
        if resp is None or len(resp) < 2:
            raise LinkError("short response")
        return apdu.split_response(resp)

    def run(self):
        app = self.app
        if not app.personalised:
            return self.result(DECLINED, "pos_blank")
        if not isinstance(self.amount, int) or isinstance(self.amount, bool) or self.amount <= 0:
            return self.result(DECLINED, "amount")
        if app.journal.free() < 1:
            return self.result(DECLINED, "journal_full")
        try:
            data, sw = self.send(_SELECT)
        except LinkError:
            return self.result(TORN, "link")
        if sw != apdu.SW_OK:
            return self.result(DECLINED, "no_app", sw)
        info = _parse_info(data)
        if info is None:
            return self.result(DECLINED, "bad_info")
        wallet, cert_env, counter, last, left, flags = info
        if flags & fields.FLAG_BLANK:
            return self.result(DECLINED, "card_blank")
        self.wallet = wallet
        self.flags = flags
        try:
            cert, cert_hash = app.certs.verify(cert_env, app.issuer_keys, self.now)
        except apdu.ApduError as e:
            if e.sw == apdu.SW_NO_RAM:
                return self.result(DECLINED, "no_ram", e.sw)
            reason = "cert_expired" if e.sw == apdu.SW_EXPIRED else "cert_invalid"
            return self.result(DECLINED, reason, e.sw)
        if cert[fields.CERT_ID] != wallet:
            return self.result(DECLINED, "bad_info")
        self.key = cert[fields.CERT_KEY]
        self.cert_hash = cert_hash

        torn = st.torn_aged(app.rt[st.R_TORN], self.now, app.config[fields.CFG_TORN_LIFE_S])
        entry = st.torn_find(torn, wallet)
        if entry is not None and last is not None and last == entry[st.N_CHALLENGE]:
            seen = st.table_find(app.rt[st.R_TABLE], wallet)
            if seen is None or counter > seen[st.T_COUNTER]:
                return self.recover(entry, counter)
        if entry is not None:
            # the card never committed it (or its counter is already taken here): drop
            torn = st.torn_without(torn, wallet)

        why = _policy(app, self.amount, self.now, wallet, counter, cert, left)
        if why:
            return self.result(DECLINED, why)
        pin = None  # a PIN goes to the card only when the amount needs one (PROTOCOL.md §5.1)
        if self.amount > cert[fields.CERT_LIMITS][fields.LIM_NO_CVM]:
            pin = self.pin
            if pin is None:
                from . import keypad

                _show(self.hal, ["Pay " + money(self.amount), "Enter PIN"])
                pin = keypad.read_pin(self.hal)
            if not pin:
                return self.result(DECLINED, "pin_required")
            if isinstance(pin, str):
                pin = pin.encode()
        challenge = bytes(self.hal.rng.random(16))
        entry = [wallet, challenge, self.amount, self.now]
        rt = dict(app.rt)
        rt[st.R_TORN] = st.torn_with(torn, entry, app.config[fields.CFG_TORN_MAX])
        try:
            app.commit_run(rt)  # write 1: the torn entry is durable before PAY leaves
        except apdu.ApduError as e:
            return self.result(DECLINED, "no_ram" if e.sw == apdu.SW_NO_RAM else "memory", e.sw)
        return self.pay(entry, counter + 1, pin)

    def drop(self, challenge):
        """Forget this tap's torn entry: in RAM now, in flash with the next write."""
        app = self.app
        rt = dict(app.rt)
        rt[st.R_TORN] = st.torn_without(rt[st.R_TORN], self.wallet, challenge)
        app.rt = rt

    def recover(self, entry, counter):
        """The card committed the payment of an earlier, torn tap: ask for it again."""
        self.amount = entry[st.N_AMOUNT]
        return self.pay(entry, counter, None, True)

    def pay(self, entry, counter, pin, recovered=False):
        app = self.app
        challenge = entry[st.N_CHALLENGE]
        req = {
            fields.REQ_CHALLENGE: challenge,
            fields.REQ_AMOUNT: entry[st.N_AMOUNT],
            fields.REQ_PAYEE: app.pos_id,
            fields.REQ_TIME: entry[st.N_TIME],
            fields.REQ_KIND: fields.PAYKIND_POS,
        }
        if pin:
            req[fields.REQ_PIN] = pin
        if self.flags & fields.FLAG_PURSES and (app.hot is None or entry[st.N_TIME] >= app.hot[1]):
            # The card checks its purse rules on it. A clock reading before the issue of the
            # ledger-signed hot list held was set back: no purse by it (PROTOCOL.md §4.2).
            req[fields.REQ_PAYEE_CERT] = app.cf[st.C_CERT]
        try:
            data, sw = self.send(
                apdu.build_command(apdu.CLA_PROP, apdu.INS_PAY, 0, 0, cbor.encode(req))
            )
        except LinkError:
            return self.result(TORN, "link")
        if sw != apdu.SW_OK:
            # A refusal leaves the card unchanged: the entry can never match again. 6F00 is no
            # refusal: the card failed, maybe after committing the payment (PROTOCOL.md §4.1),
            # so the entry stays and the next tap's INFO says which (recovered, or dropped).
            if sw != apdu.SW_INTERNAL:
                self.drop(challenge)
            r = self.result(DECLINED, _card_reason(sw), sw)
            if sw & 0xFFF0 == 0x63C0:
                r.tries_left = sw & 0x0F
            return r
        rule_env = None
        try:
            if data[:1] == b"\x83":  # [body, sig, rule]: a purse paid part (PROTOCOL.md §4.2)
                from .rules import split_answer

                data, rule_env = split_answer(data)
            body_bytes, body = check_payment(
                data,
                self.key,
                self.wallet,
                counter,
                self.amount,
                app.pos_id,
                challenge,
                fields.PAYKIND_POS,
            )
        except apdu.ApduError as e:
            # Not the payment asked for (tampered, or a card that misbehaves), or this POS
            # out of RAM to check it: nothing is journaled; the torn entry stays, so a clean
            # re-tap can still complete it.
            if e.sw == apdu.SW_NO_RAM:
                return self.result(DECLINED, "no_ram", e.sw)
            return self.result(DECLINED, "bad_payment", e.sw)
        try:
            if (
                rule_env is not None
                or body.get(fields.PAY_PURSE)
                or fields.PAY_PROGRAM in body
                or fields.PAY_EARMARKED in body
                or fields.PAY_PURSE_BALANCE in body
            ):
                from .rules import check_purse

                check_purse(app, body, rule_env, self.amount, entry[st.N_TIME])
        except apdu.ApduError as e:
            if e.sw == apdu.SW_NO_RAM:  # this POS out of RAM checking the rule: as above
                return self.result(DECLINED, "no_ram", e.sw)
            if e.sw == apdu.SW_DATA_INVALID or e.sw == apdu.SW_WRONG_DATA:
                return self.result(DECLINED, "bad_payment", e.sw)  # malformed: as above
            # Earmarked value its rule does not allow here (only a tampered card signs that):
            # nothing journaled, and the entry goes as for a refusal: a re-tap would only
            # recover the same signed payment and be refused again (PROTOCOL.md §4.2).
            self.drop(challenge)
            return self.result(DECLINED, "purse_rule", e.sw)
        seen = st.table_find(app.rt[st.R_TABLE], self.wallet)
        if seen is not None and counter <= seen[st.T_COUNTER]:
            return self.result(DECLINED, "counter")
        return self.journal(data, body_bytes, body, counter, recovered)

    def journal(self, payment, body_bytes, body, counter, recovered):
        from ..core.storage import StorageFull

        app = self.app
        seq = app.journal.last_seq + 1
        rcpt = {
            fields.RCPT_POS: app.pos_id,
            fields.RCPT_WALLET: self.wallet,
            fields.RCPT_COUNTER: counter,
            fields.RCPT_AMOUNT: self.amount,
            fields.RCPT_PAYMENT_HASH: envelope.body_hash(body_bytes),
            fields.RCPT_SEQ: seq,
            fields.RCPT_TIME: self.now,
        }
        try:
            receipt = app.sign(envelope.TAG_RECEIPT, rcpt)
        except MemoryError:  # nothing journaled: the torn entry lets a re-tap complete it
            return self.result(DECLINED, "no_ram", apdu.SW_NO_RAM)
        record = st.payment_record(payment, receipt, self.cert_hash)
        try:
            got = app.journal.append(record)  # write 2: the payment is taken
        except PowerCut:
            raise
        except StorageFull:
            return self.result(DECLINED, "journal_full")
        except MemoryError:
            return self.result(DECLINED, "no_ram", apdu.SW_NO_RAM)
        except Exception:
            return self.result(DECLINED, "memory", apdu.SW_MEMORY)
        if got != seq:  # cannot happen with core.storage; never hand out a wrong receipt
            return self.result(DECLINED, "memory", apdu.SW_INTERNAL)
        challenge = body[fields.PAY_CHALLENGE]
        app.rt = app.run_after_payment(
            app.rt, seq, self.wallet, counter, challenge, self.amount, self.now
        )
        r = self.result(APPROVED, "recovered" if recovered else "ok")
        r.counter = counter
        r.payment = payment
        r.receipt = receipt
        r.seq = seq
        r.balance = body[fields.PAY_BALANCE]
        r.recovered = recovered
        if fields.PAY_PROGRAM in body:
            r.purse = body[fields.PAY_PURSE]
            r.program = body[fields.PAY_PROGRAM]
            r.earmarked = body[fields.PAY_EARMARKED]
            r.purse_balance = body[fields.PAY_PURSE_BALANCE]
        try:
            _d, sw = self.send(
                apdu.build_command(apdu.CLA_PROP, apdu.INS_RECEIPT, 0, 0, receipt, False)
            )
            r.receipt_sent = sw == apdu.SW_OK
        except LinkError:
            pass  # the card left: the payment stands, the receipt is in the journal
        return r


def _show(hal, lines):
    display = hal.display
    if display is not None:
        display.show(lines)


def _signal(hal, ok):
    sig = hal.signal
    if sig is not None:
        if ok:
            sig.ok()
        else:
            sig.fail()


# What the POS screen says (16 columns: a 128-px SSD1306 with an 8-px font).
_MESSAGES = {
    "funds": "Not enough funds",
    "pin_wrong": "Wrong PIN",
    "pin_blocked": "PIN blocked",
    "pin_required": "PIN required",
    "revoked": "Card blocked",
    "cert_expired": "Card expired",
    "counter": "Card refused",  # a counter seen before: clone or rollback
    "card_refused": "Card refused",
    "bad_payment": "Card refused",  # the card's payment failed the POS's checks
    "card_blank": "Card not set up",
    "bad_info": "Unknown card",
    "no_app": "Unknown card",  # a card without the tapcash application
    "over_payment_max": "Over card limit",
    "offline_count": "Card must sync",
    "offline_amount": "Card must sync",
    "card_full": "Card must sync",
    "velocity": "Daily limit",
    "floor_limit": "Over floor limit",
    "amount": "Bad amount",
    "pos_blank": "POS not set up",
    "hotlist_stale": "Sync POS first",
    "journal_full": "Sync POS first",
    "link": "Tap again",
    "memory": "POS flash error",
    "purse_rule": "Purse refused",  # the card's earmarked part broke its rule
    "purse": "Purse refused",
    "no_ram": "POS busy: retry",
    "card_no_ram": "Card busy: retry",
}


def take_payment(app, amount, pin=None):
    hal = app.hal
    if isinstance(amount, int) and not isinstance(amount, bool):
        _show(hal, ["Pay " + money(amount), "Tap card"])
    r = _Flow(app, amount, pin).run()
    if r.approved:
        lines = ["Approved", money(r.amount)]
        if r.recovered:
            lines.append("(earlier tap)")
        if r.earmarked:
            lines.append("Purse " + money(r.earmarked))
        if r.balance >= 0:
            lines.append("Balance " + money(r.balance))
        _show(hal, lines)
        _signal(hal, True)
    else:
        msg = _MESSAGES.get(r.reason, "Declined")
        lines = ["Declined" if r.status == DECLINED else "Interrupted", msg]
        if r.tries_left >= 0:
            lines.append(f"{r.tries_left} tries left")
        _show(hal, lines)
        _signal(hal, False)
    return r
