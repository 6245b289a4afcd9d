# Portable tests for earmarked purses (PROTOCOL.md §2.9, §4.2): the wallet app loads a purse
# from an issuer-signed voucher and rule, pays a POS from it in one tap with the rest from the
# main purse, refuses a payee or a time its rule does not allow, and the POS refuses a purse
# payment its rule does not allow. Run by pytest on CPython and, unchanged, inside the
# MicroPython VM (plain asserts, no CPython-only modules), on FileFlash.
try:
    from tapcash.firmware import main as board_main
    from tapcash.firmware.core import cbor, comb, ed25519, fileflash, hal, proto
    from tapcash.firmware.hal.keypad import Button
    from tapcash.firmware.hal.ssd1306 import SSD1306
    from tapcash.firmware.pos import state as pos_state
    from tapcash.firmware.pos.app import PosApp
    from tapcash.firmware.wallet import state as wallet_state
    from tapcash.firmware.wallet.app import WalletApp
except ImportError:  # on a board / in the VM the firmware tree is importable as `firmware`
    from firmware import main as board_main
    from firmware.core import cbor, comb, ed25519, fileflash, hal, proto
    from firmware.hal.keypad import Button
    from firmware.hal.ssd1306 import SSD1306
    from firmware.pos import state as pos_state
    from firmware.pos.app import PosApp
    from firmware.wallet import state as wallet_state
    from firmware.wallet.app import WalletApp
import portable_kit as kit

try:
    import framebuf  # MicroPython's: the SSD1306 driver draws with it
except ImportError:
    framebuf = None

ISSUER = kit.Issuer(b"\x33" * 32)
WALLET_ID = b"VMWALLP1"
PROGRAM = b"BUS-2026"
BUS = b"BUSCO-01"
SHOP = b"SHOP-001"
TRANSPORT = 4111  # merchant category of the bus company


def _fresh_dir():
    return kit.fresh_dir("purse")


def _rule(expires=kit.NOW + 86400, merchants=None, categories=None, cap=0, unit=0, program=PROGRAM,
          kind=proto.PROG_SUBSIDY):  # fmt: skip
    body = {
        proto.RULE_PROGRAM: program,
        proto.RULE_KIND: kind,
        proto.RULE_FROM: kit.NOW - 86400,
        proto.RULE_EXPIRES: expires,
        proto.RULE_FUNDER: "city",
    }
    if merchants:
        body[proto.RULE_MERCHANTS] = merchants
    if categories:
        body[proto.RULE_CATEGORIES] = categories
    if cap:
        body[proto.RULE_CAP] = cap
    if unit:
        body[proto.RULE_UNIT] = unit
    return ISSUER.seal(proto.TAG_RULE, body)


def _voucher(number, amount, rule=None):
    source = proto.VSRC_TOPUP if rule is None else proto.VSRC_PROGRAM
    return ISSUER.voucher(WALLET_ID, number, amount, source, rule)


def _wallet(root, main=10000):
    app = WalletApp(hal.Hal(flash=fileflash.FileFlash(root), rng=kit.Rng()))
    kit.ok(app, proto.INS_SELECT, proto.AID, 0x00, 4)
    kit.personalise_wallet(app, ISSUER, WALLET_ID, dict(proto.DEFAULT_LIMITS))
    kit.ok(app, proto.INS_LOAD, _voucher(1, main))
    return app


def _pos(root, link, pos_id, merchant, category=0, now=kit.NOW):
    flash = fileflash.FileFlash(root)
    app = PosApp(hal.Hal(flash=flash, clock=kit.Clock(now), rng=kit.Rng(), link=link))
    app.power_on()
    kit.personalise_pos(app, ISSUER, pos_id, merchant, now, category=category)
    return app


def _purse_forger(rule, seed):
    """A tampered card's answer to PAY: its payment re-signed with the extracted key `seed` as
    paid in full from the purse under `rule`."""

    def forge(apdu, resp):
        if apdu[1] != proto.INS_PAY or resp[-2:] != b"\x90\x00":
            return resp
        body = dict(proto.open_envelope(resp[:-2])[1])
        body[proto.PAY_PURSE] = 1
        body[proto.PAY_PROGRAM] = PROGRAM
        body[proto.PAY_EARMARKED] = body[proto.PAY_AMOUNT]
        body[proto.PAY_PURSE_BALANCE] = 0
        env = proto.seal(proto.TAG_PAYMENT, body, seed)
        return b"\x83" + env[1:] + cbor.encode(rule) + b"\x90\x00"

    return forge


def _purses(wallet):
    kit.ok(wallet, proto.INS_VERIFY_PIN, b"1234", 0x00, 0, 0x80)
    info = cbor.decode(kit.ok(wallet, proto.INS_GET_INFO))
    return info[proto.INFO_BALANCE], [(p[0], p[1]) for p in info.get(proto.INFO_PURSES, [])]


def test_purse_load_exactly_once_and_bounded():
    try:
        w = _wallet(_fresh_dir())
        rule = _rule(merchants=[BUS])
        out = cbor.decode(kit.ok(w, proto.INS_LOAD, _voucher(2, 3000, rule)))
        assert out == {0: 10000, 1: 3000}
        # the same voucher again, or one out of order: refused, nothing changes
        assert kit.call(w, proto.INS_LOAD, _voucher(2, 3000, rule))[1] == proto.SW_REPLAY
        assert kit.call(w, proto.INS_LOAD, _voucher(4, 3000, rule))[1] == proto.SW_REPLAY
        # a rule not signed by the issuer
        forged = proto.seal(proto.TAG_RULE, proto.open_envelope(rule)[1], b"\x44" * 32)
        assert kit.call(w, proto.INS_LOAD, _voucher(3, 100, forged))[1] == proto.SW_BAD_SIGNATURE
        # another rule for the same programme: a programme has one rule
        other = _rule(merchants=[SHOP])
        assert kit.call(w, proto.INS_LOAD, _voucher(3, 100, other))[1] == proto.SW_DATA_INVALID
        # a top-up of the same purse adds to it
        assert cbor.decode(kit.ok(w, proto.INS_LOAD, _voucher(3, 500, rule)))[1] == 3500
        # at most MAX_PURSES purses
        n = 4
        for i in range(proto.MAX_PURSES - 1):
            r = _rule(merchants=[BUS], program=b"PROG-00" + str(i).encode())
            kit.ok(w, proto.INS_LOAD, _voucher(n, 100, r))
            n += 1
        full = _rule(merchants=[BUS], program=b"PROG-FUL")
        assert kit.call(w, proto.INS_LOAD, _voucher(n, 100, full))[1] == proto.SW_PURSE_FULL
        main, purses = _purses(w)
        assert main == 10000 and len(purses) == proto.MAX_PURSES
        assert purses[0] == (PROGRAM, 3500)
    finally:
        kit.cleanup()


def test_purse_pays_first_and_splits_with_main_in_one_tap():
    try:
        w = _wallet(_fresh_dir())
        kit.ok(w, proto.INS_LOAD, _voucher(2, 3000, _rule(categories=[TRANSPORT])))
        link = kit.Link(w)
        bus = _pos(_fresh_dir(), link, b"BUSPOS01", BUS, TRANSPORT)
        r = bus.take_payment(2000)
        assert r.status == "approved" and (r.purse, r.program, r.earmarked) == (1, PROGRAM, 2000)
        assert r.balance == 10000 and r.purse_balance == 1000
        assert link.trips == 3 and link.air <= 1024
        # the bus POS's certificate is remembered as verified (no signature check next time)
        known = w.state[wallet_state.S_PAYEES]
        assert [(e[1], e[2], e[3]) for e in known] == [(b"BUSPOS01", BUS, TRANSPORT)]
        link.trips = link.air = 0
        r = bus.take_payment(2500)  # the purse has 1000 left: the main purse pays 1500
        assert r.status == "approved" and r.earmarked == 1000 and r.purse_balance == 0
        assert r.balance == 8500 and link.trips == 3 and link.air <= 1024
        body = proto.open_envelope(r.payment)[1]
        assert body[proto.PAY_AMOUNT] == 2500 and body[proto.PAY_EARMARKED] == 1000
        assert body[proto.PAY_BALANCE] == 8500 and body[proto.PAY_PURSE_BALANCE] == 0
        # an empty purse: the card no longer flags purses, the POS sends no certificate
        link.trips = link.air = 0
        r = bus.take_payment(100)
        assert r.status == "approved" and r.earmarked == 0 and r.balance == 8400
        assert link.air < 700
    finally:
        kit.cleanup()


def test_purse_load_keeps_the_issuer_key_table_and_the_first_tap_uses_it():
    old = ed25519.backend()
    ed25519.set_backend("pure")  # PyNaCl verifying (CPython's default) needs no table
    try:
        w = _wallet(_fresh_dir())
        flash = w.hal.flash
        assert flash.size("keytab0") == 0  # a card without purses checks no POS certificate
        kit.ok(w, proto.INS_LOAD, _voucher(2, 3000, _rule(merchants=[BUS])))
        assert flash.size("keytab0") == comb.TABLE_BYTES
        whole = flash.read("keytab0")
        link = kit.Link(w)
        r = _pos(_fresh_dir(), link, b"BUSPOS01", BUS).take_payment(500)
        assert r.status == "approved" and r.earmarked == 500
        # a table that passes its checks is what the card verifies with: spoilt past its
        # first entry, a genuine certificate no longer verifies (the purse does not pay)
        flash.write("keytab0", whole[:128] + bytes(len(whole) - 128))
        r = _pos(_fresh_dir(), link, b"BUSPOS02", BUS).take_payment(500)
        assert r.status == "approved" and r.earmarked == 0
        # torn (a power cut while it was written): the card verifies without it
        flash.write("keytab0", whole[:5000])
        r = _pos(_fresh_dir(), link, b"BUSPOS03", BUS).take_payment(500)
        assert r.status == "approved" and r.earmarked == 500
        # the next purse LOAD writes it whole again
        kit.ok(w, proto.INS_LOAD, _voucher(3, 100, _rule(merchants=[BUS])))
        assert flash.read("keytab0") == whole
        # with the table, a certificate the issuer did not sign still does not count
        shop = _pos(_fresh_dir(), link, b"SHOPPOS1", SHOP)
        body = proto.open_envelope(shop.cf[pos_state.C_CERT])[1]
        body[proto.CERT_MERCHANT] = BUS
        req = {
            proto.REQ_CHALLENGE: b"C" * 16,
            proto.REQ_AMOUNT: 100,
            proto.REQ_PAYEE: b"SHOPPOS1",
            proto.REQ_TIME: kit.NOW,
            proto.REQ_KIND: proto.PAYKIND_POS,
            proto.REQ_PURSE: 1,
            proto.REQ_PAYEE_CERT: proto.seal(proto.TAG_CERT, body, b"\x45" * 32),
        }
        kit.ok(w, proto.INS_SELECT, proto.AID, 0x00, 4)
        assert kit.call(w, proto.INS_PAY, cbor.encode(req))[1] == proto.SW_PURSE
        req[proto.REQ_PAYEE_CERT] = shop.cf[pos_state.C_CERT]  # genuine: not the rule's merchant
        assert kit.call(w, proto.INS_PAY, cbor.encode(req))[1] == proto.SW_PURSE
    finally:
        ed25519.set_backend(old)
        kit.cleanup()


def test_card_refuses_payee_and_time_the_rule_does_not_allow():
    try:
        w = _wallet(_fresh_dir())
        kit.ok(w, proto.INS_LOAD, _voucher(2, 3000, _rule(merchants=[BUS], expires=kit.NOW + 100)))
        link = kit.Link(w)
        shop = _pos(_fresh_dir(), link, b"SHOPPOS1", SHOP, 5411)
        r = shop.take_payment(500)  # not the rule's merchant: the main purse pays it all
        assert r.status == "approved" and r.earmarked == 0 and r.balance == 9500
        # asked for the purse explicitly at that payee: 6918, nothing changes
        req = {
            proto.REQ_CHALLENGE: b"C" * 16,
            proto.REQ_AMOUNT: 100,
            proto.REQ_PAYEE: b"SHOPPOS1",
            proto.REQ_TIME: kit.NOW,
            proto.REQ_KIND: proto.PAYKIND_POS,
            proto.REQ_PURSE: 1,
            proto.REQ_PAYEE_CERT: shop.cf[pos_state.C_CERT],
        }
        kit.ok(w, proto.INS_SELECT, proto.AID, 0x00, 4)
        assert kit.call(w, proto.INS_PAY, cbor.encode(req))[1] == proto.SW_PURSE
        # a certificate that does not name the payee does not count
        req[proto.REQ_PAYEE] = b"BUSPOS01"
        assert kit.call(w, proto.INS_PAY, cbor.encode(req))[1] == proto.SW_PURSE
        # nor does a certificate the issuer did not sign (the card verifies it)
        body = proto.open_envelope(shop.cf[pos_state.C_CERT])[1]
        body[proto.CERT_MERCHANT] = BUS
        req[proto.REQ_PAYEE] = b"SHOPPOS1"
        req[proto.REQ_PAYEE_CERT] = proto.seal(proto.TAG_CERT, body, b"\x45" * 32)
        assert kit.call(w, proto.INS_PAY, cbor.encode(req))[1] == proto.SW_PURSE
        # at the right merchant, but the POS clock says the purse expired
        late = _pos(_fresh_dir(), link, b"BUSPOS01", BUS, 0, now=kit.NOW + 101)
        r = late.take_payment(700)
        assert r.status == "approved" and r.earmarked == 0 and r.balance == 8800
        # and within its time
        bus = _pos(_fresh_dir(), link, b"BUSPOS02", BUS, 0)
        r = bus.take_payment(700)
        assert r.status == "approved" and r.earmarked == 700 and r.balance == 8800
        assert _purses(w) == (8800, [(PROGRAM, 2300)])
    finally:
        kit.cleanup()


def test_pos_refuses_a_tampered_cards_purse_payment():
    # The card's key is extracted: it signs a purse payment its rule does not allow (a shop,
    # not the bus company). The POS checks the same rule and journals nothing.
    try:
        w = _wallet(_fresh_dir())
        rule = _rule(merchants=[BUS])
        kit.ok(w, proto.INS_LOAD, _voucher(2, 3000, rule))
        seed = w.state[1]  # wallet.state.S_SEED: what a flash dump gives the attacker
        link = kit.Link(w)
        shop = _pos(_fresh_dir(), link, b"SHOPPOS1", SHOP, 5411)
        link.forge = _purse_forger(rule, seed)
        r = shop.take_payment(500)
        assert r.status == "declined" and r.reason == "purse_rule"
        assert shop.journal.last_seq == 0
        # the decline leaves no torn entry (as a card's refusal does): a re-tap is a fresh
        # payment, not a recovery of the refused one, and is refused afresh
        assert shop.rt[pos_state.R_TORN] == []
        r = shop.take_payment(300)
        assert r.status == "declined" and r.reason == "purse_rule" and not r.recovered
        assert shop.rt[pos_state.R_TORN] == [] and shop.journal.last_seq == 0
        # the card paying honestly again: approved at once, nothing left in progress
        link.forge = None
        r = shop.take_payment(200)
        assert r.status == "approved" and r.reason == "ok" and r.earmarked == 0
        assert shop.rt[pos_state.R_TORN] == [] and shop.journal.last_seq == 1
        shop.power_on()  # and in flash: the next write carried the drop
        assert shop.rt[pos_state.R_TORN] == []
    finally:
        kit.cleanup()


def test_pos_takes_a_malformed_purse_payment_as_a_bad_payment():
    # Signed earmarked fields in a body that names no purse (purse 0), or no rule sent with
    # them: not a purse payment's shape, so "bad_payment" (the torn entry stays, as for any bad
    # payment), not "purse_rule"; nothing journaled either way.
    try:
        w = _wallet(_fresh_dir())
        kit.ok(w, proto.INS_LOAD, _voucher(2, 3000, _rule(merchants=[BUS])))
        seed = w.state[1]
        link = kit.Link(w)
        shop = _pos(_fresh_dir(), link, b"SHOPPOS1", SHOP, 5411)
        extra = {}

        def forge(apdu, resp):
            if apdu[1] != proto.INS_PAY or resp[-2:] != b"\x90\x00":
                return resp
            body = dict(proto.open_envelope(resp[:-2])[1])
            body.update(extra)
            return proto.seal(proto.TAG_PAYMENT, body, seed) + b"\x90\x00"

        link.forge = forge
        for fields_ in (
            {proto.PAY_PROGRAM: PROGRAM},  # purse 0 with a programme
            {proto.PAY_PURSE_BALANCE: 0},  # purse 0 with a purse balance
            {proto.PAY_PURSE: 1, proto.PAY_PROGRAM: PROGRAM, proto.PAY_EARMARKED: 1},  # no rule
        ):
            extra.clear()
            extra.update(fields_)
            r = shop.take_payment(500)
            want = "purse_rule" if proto.PAY_PURSE in fields_ else "bad_payment"
            assert r.status == "declined" and r.reason == want, (fields_, r.reason)
            assert shop.journal.last_seq == 0
            assert len(shop.rt[pos_state.R_TORN]) == (want == "bad_payment")
    finally:
        kit.cleanup()


def test_pos_judges_expiry_by_its_clock_and_an_unset_clock_takes_no_purse():
    # A tampered card pays its purse at the right merchant after the purse expired (by the
    # POS clock): the POS refuses. An honest card at a POS without a clock pays from the main
    # purse (expiry cannot be judged).
    try:
        w = _wallet(_fresh_dir())
        rule = _rule(merchants=[BUS], expires=kit.NOW + 100)
        kit.ok(w, proto.INS_LOAD, _voucher(2, 3000, rule))
        seed = w.state[1]
        link = kit.Link(w)
        late = _pos(_fresh_dir(), link, b"BUSPOS01", BUS, 0, now=kit.NOW + 500)
        link.forge = _purse_forger(rule, seed)
        r = late.take_payment(500)
        assert r.status == "declined" and r.reason == "purse_rule"
        assert late.journal.last_seq == 0 and late.rt[pos_state.R_TORN] == []
        link.forge = None
        clockless = _pos(_fresh_dir(), link, b"BUSPOS02", BUS, 0, now=0)
        r = clockless.take_payment(400)
        assert r.status == "approved" and r.earmarked == 0
    finally:
        kit.cleanup()


def test_clear_update_empties_the_purse():
    try:
        w = _wallet(_fresh_dir())
        kit.ok(w, proto.INS_LOAD, _voucher(2, 3000, _rule(merchants=[BUS])))
        upd = ISSUER.seal(
            proto.TAG_UPDATE,
            {proto.UPD_DEVICE: WALLET_ID, proto.UPD_NUMBER: 1, proto.UPD_PURSE_CLEAR: [PROGRAM]},
        )
        kit.ok(w, proto.INS_APPLY, upd)
        assert _purses(w) == (10000, [])
        info = cbor.decode(kit.ok(w, proto.INS_GET_INFO))
        assert not info[proto.INFO_FLAGS] & proto.FLAG_PURSES
    finally:
        kit.cleanup()


# ---- the visual card's screen: its button pages through every purse (wallet/screen.py) -------
class _Bus:
    """The I2C bus under the SSD1306: takes its writes."""

    def writeto(self, addr, buf):
        pass

    def writevto(self, addr, bufs):
        pass


class _Lines(hal.Display):
    """Where framebuf is missing (CPython): the lines the card drew, as SSD1306.lines keeps them."""

    def __init__(self):
        self.lines = []

    def show(self, lines):
        self.lines = [str(s)[:16] for s in lines[:8]]


class _Pin:
    """The button's GPIO (pulled up: it reads 0 while the button is held)."""

    level = 1

    def value(self):
        return self.level


def _press(idle, pin):
    """One press of the card's button between taps: held over a few of the idle loop's polls
    (hal/keypad.Button, polled with get_key(0), reports it once), then released."""
    pin.level = 0
    for _ in range(3):
        idle()
    pin.level = 1
    idle()


def _drawn(lines):
    """The SSD1306's 128x64 frame buffer for `lines` (the driver's spacing rule)."""
    buf = bytearray(128 * 64 // 8)
    fb = framebuf.FrameBuffer(buf, 128, 64, framebuf.MONO_VLSB)
    step = 16 if len(lines) <= 4 else 8
    for i in range(len(lines)):
        fb.text(lines[i], 0, i * step, 1)
    return bytes(buf)


def test_visual_card_button_pages_through_every_purse_on_its_screen():
    try:
        oled = SSD1306(_Bus(), 128, 64) if framebuf is not None else _Lines()
        pin = _Pin()
        button = Button(pin, debounce_ms=0)  # the visual card's (hal/keypad.py)
        root = _fresh_dir()
        app = WalletApp(hal.Hal(flash=fileflash.FileFlash(root), rng=kit.Rng(), display=oled,
                                keys=button), {"visual": True})  # fmt: skip
        idle = board_main.wallet_idle(app)
        _press(idle, pin)  # a blank card has nothing to show
        assert oled.lines == []
        kit.ok(app, proto.INS_SELECT, proto.AID, 0x00, 4)
        limits = dict(proto.DEFAULT_LIMITS)
        limits[proto.LIM_BALANCE_MAX] = 10000000  # the widest balance a line holds: 99999.99
        kit.personalise_wallet(app, ISSUER, WALLET_ID, limits)
        kit.ok(app, proto.INS_LOAD, _voucher(1, 1234567))
        _press(idle, pin)  # no earmarked purse: the main purse and the offline payments left
        assert oled.lines == ["Balance 12345.67", "Offline left 10"]
        bus = _rule(merchants=[BUS], cap=500)
        lessons = _rule(expires=kit.NOW + 40 * 86400, program=b"LESSONS1", unit=2500,
                        merchants=[SHOP], kind=proto.PROG_PREPAID)  # fmt: skip
        kit.ok(app, proto.INS_LOAD, _voucher(2, 3000, bus))
        kit.ok(app, proto.INS_LOAD, _voucher(3, 10000, lessons))
        assert oled.lines == ["Loaded 100.00", "Purse 2 100.00"]  # what LOAD shows
        overview = ["Balance 12345.67", "Purse 1 30.00", "Purse 2 100.00"]
        screens = [
            overview,
            ["Purse 1 30.00", "Subsidy", "Until 2027-01-16", "Cap 5.00"],  # NOW: 2027-01-15
            ["Purse 2 100.00", "Prepaid", "Until 2027-02-24", "Unit 25.00"],
            overview,  # round again
        ]
        for lines in screens:
            _press(idle, pin)
            assert oled.lines == lines, oled.lines
            if framebuf is not None:
                assert bytes(oled.buffer) == _drawn(lines)
        idle()  # no press: the screen stays
        assert oled.lines == overview
        _press(idle, pin)
        assert oled.lines == screens[1]
        kit.ok(app, proto.INS_LOAD, _voucher(4, 500, bus))  # a tap changed the card
        _press(idle, pin)  # the overview first, with the new balance
        assert oled.lines == ["Balance 12345.67", "Purse 1 35.00", "Purse 2 100.00"]
        for lines in screens + [oled.lines]:
            for line in lines:
                assert len(line) <= 16  # 128 columns of the 8x8 font
        # a wallet that is not a visual card does not poll a button between taps
        plain = WalletApp(hal.Hal(flash=fileflash.FileFlash(_fresh_dir()), rng=kit.Rng(),
                                  keys=Button(_Pin())))  # fmt: skip
        assert board_main.wallet_idle(plain) is None
    finally:
        kit.cleanup()
