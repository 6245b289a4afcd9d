# Portable tests for the POS app (firmware/pos) paying against the wallet app, both on
# FileFlash: run by pytest on CPython and, unchanged, inside the MicroPython VM (plain
# asserts, no pytest features, no CPython-only modules). The issuer's objects are sealed
# here with proto.seal and a fixed issuer seed (host/issuer.py is not in the VM).
import os

try:
    from tapcash.firmware.core import cbor, ed25519, fileflash, hal, proto
    from tapcash.firmware.core.runtime import sha256, urandom
    from tapcash.firmware.pos.app import PosApp
    from tapcash.firmware.wallet.app import WalletApp
except ImportError:  # on a board / in the VM the firmware tree is importable as `firmware`
    from firmware.core import cbor, ed25519, fileflash, hal, proto
    from firmware.core.runtime import sha256, urandom
    from firmware.pos.app import PosApp
    from firmware.wallet.app import WalletApp

ISSUER_SEED = b"\x22" * 32
WALLET_ID = b"VMWALLT2"
POS_ID = b"VMPOS002"
MERCHANT_ID = b"VMSHOP01"
NOW = 1800000000

_made = []


def _fresh_dir():
    path = "/tmp/tc_pos_" + urandom(4).hex()
    _made.append(path)
    return path


def _cleanup():
    while _made:
        path = _made.pop()
        try:
            names = os.listdir(path)
        except OSError:
            continue
        for n in names:
            os.remove(path + "/" + n)
        os.rmdir(path)


class _Rng(hal.Rng):
    def random(self, n):
        return urandom(n)


class _Clock(hal.Clock):
    def now(self):
        return NOW


class _Link(hal.Link):
    """The field, in process: tear_pay_response drops the answer to the next PAY."""

    def __init__(self, card):
        self.card = card
        self.tear_pay_response = False
        self.air = 0
        self.trips = 0

    def transceive(self, apdu):
        resp = self.card.process(apdu)
        if self.tear_pay_response and apdu[1] == proto.INS_PAY:
            self.tear_pay_response = False
            raise hal.LinkError()
        self.air += len(apdu) + len(resp)
        self.trips += 1
        return resp


def _ok(app, ins, data=b"", cla=0x80, p1=0):
    resp = app.process(proto.build_command(cla, ins, p1, 0, data))
    assert resp[-2:] == b"\x90\x00", resp[-2:].hex()
    return resp[:-2]


def _issuer():
    return ed25519.public_key(ISSUER_SEED)


def _seal(tag, body):
    return proto.seal(tag, body, ISSUER_SEED)


def _wallet(root):
    app = WalletApp(hal.Hal(flash=fileflash.FileFlash(root), rng=_Rng()))
    _ok(app, proto.INS_SELECT, proto.AID, 0x00, 4)
    pk = _ok(app, proto.INS_PERSO_KEYGEN)
    cert = _seal(
        proto.TAG_CERT,
        {
            proto.CERT_KIND: proto.KIND_WALLET,
            proto.CERT_ID: WALLET_ID,
            proto.CERT_KEY: pk,
            proto.CERT_ISSUER: proto.key_id(_issuer()),
            proto.CERT_EXPIRES: NOW + 10**7,
            proto.CERT_LIMITS: dict(proto.DEFAULT_LIMITS),
            proto.CERT_SERIAL: 1,
        },
    )
    finish = {
        proto.PF_CERT: cert,
        proto.PF_ISSUERS: [_issuer()],
        proto.PF_PIN: b"1234",
        proto.PF_PUK: b"12345678",
    }
    _ok(app, proto.INS_PERSO_FINISH, cbor.encode(finish))
    voucher = _seal(
        proto.TAG_VOUCHER,
        {
            proto.VCH_WALLET: WALLET_ID,
            proto.VCH_NUMBER: 1,
            proto.VCH_AMOUNT: 20000,
            proto.VCH_SOURCE: proto.VSRC_TOPUP,
            proto.VCH_REF: b"",
            proto.VCH_PURSE: 0,
        },
    )
    _ok(app, proto.INS_LOAD, voucher)
    return app


def _pos(root, link):
    app = PosApp(hal.Hal(flash=fileflash.FileFlash(root), clock=_Clock(), rng=_Rng(), link=link))
    app.power_on()
    pk = _ok(app, proto.INS_PERSO_KEYGEN)
    cert = _seal(
        proto.TAG_CERT,
        {
            proto.CERT_KIND: proto.KIND_POS,
            proto.CERT_ID: POS_ID,
            proto.CERT_KEY: pk,
            proto.CERT_ISSUER: proto.key_id(_issuer()),
            proto.CERT_EXPIRES: NOW + 10**7,
            proto.CERT_MERCHANT: MERCHANT_ID,
            proto.CERT_SERIAL: 1,
        },
    )
    hot = _seal(
        proto.TAG_HOTLIST, {proto.HOT_VERSION: 1, proto.HOT_ISSUED: NOW, proto.HOT_REVOKED: []}
    )
    finish = {proto.PF_CERT: cert, proto.PF_ISSUERS: [_issuer()], proto.PF_HOTLIST: hot}
    _ok(app, proto.INS_PERSO_FINISH, cbor.encode(finish))
    return app, pk


def test_pos_payment_tear_recovery_export_ack():
    try:
        wallet = _wallet(_fresh_dir())
        link = _Link(wallet)
        pos_root = _fresh_dir()
        pos, pos_pk = _pos(pos_root, link)

        r = pos.take_payment(1234)
        assert r.status == "approved" and r.counter == 1 and r.receipt_sent
        assert link.trips == 3 and link.air < 700

        # the answer to PAY is lost: torn, then the re-tap completes the same payment
        link.tear_pay_response = True
        r = pos.take_payment(7000, b"1234")
        assert r.status == "torn"
        wallet.power_on()
        pos = PosApp(pos.hal)  # the POS reboots too: the torn entry is on flash
        pos.power_on()
        r = pos.take_payment(7000)
        assert r.status == "approved" and r.recovered and r.counter == 2
        assert r.balance == 20000 - 1234 - 7000

        ex = cbor.decode(_ok(pos, proto.INS_EXPORT, cbor.encode({0: 0, 1: 10})))
        recs = ex[proto.EXP_RECORDS]
        assert [s for s, _r in recs] == [1, 2] and not ex[proto.EXP_MORE]
        status = proto.verify_envelope(proto.TAG_STATUS, ex[proto.EXP_STATUS], pos_pk)
        digest = b"\x00" * 32  # the journal chain, recomputed from the bytes exported
        for seq, raw in recs:
            h = sha256(proto.TAG_JOURNAL + digest + bytes((0, 0, 0, seq)))
            h.update(sha256(raw).digest())
            digest = h.digest()
        assert status == {proto.ST_DEVICE: POS_ID, proto.ST_SEQ: 2, proto.ST_DIGEST: digest}
        prev = b"\x00" * 32
        for _seq, raw in recs:
            rec = cbor.decode(raw)
            body_bytes, body, _sig = proto.open_envelope(rec[proto.REC_SIGNED])
            assert body[proto.PAY_PREV] == prev
            prev = sha256(body_bytes).digest()
            rcpt = proto.verify_envelope(proto.TAG_RECEIPT, rec[proto.REC_RECEIPT], pos_pk)
            assert rcpt[proto.RCPT_PAYMENT_HASH] == prev

        wrong = _seal(
            proto.TAG_ACK,
            {proto.ACK_DEVICE: POS_ID, proto.ACK_UPTO: 2, proto.ACK_TIME: NOW,
             proto.ACK_DIGEST: b"\x00" * 32},
        )
        assert pos.process(proto.build_command(0x80, proto.INS_ACK, 0, 0, wrong)) == b"\x69\x84"
        ack = _seal(
            proto.TAG_ACK,
            {proto.ACK_DEVICE: POS_ID, proto.ACK_UPTO: 2, proto.ACK_TIME: NOW,
             proto.ACK_DIGEST: digest},
        )
        _ok(pos, proto.INS_ACK, ack)
        info = cbor.decode(_ok(pos, proto.INS_GET_INFO))
        assert info[proto.INFO_SEQ] == 2 and info[proto.INFO_RECORDS] == 0

        # the card after a reboot of its own: its next counter, after the pruning too
        wallet2 = WalletApp(hal.Hal(flash=wallet.hal.flash, rng=_Rng()))
        link.card = wallet2
        assert pos.take_payment(100).counter == 3
    finally:
        _cleanup()


def test_pos_process_refuses_garbage_without_change():
    try:
        link = _Link(None)
        pos, _pk = _pos(_fresh_dir(), link)
        for apdu in (
            b"",
            b"\x80",
            b"\x80\x60\x00\x00\x01\xff",
            b"\x80\x62\x00\x00",
            b"\x12\x34\x00\x00",
        ):
            resp = pos.process(apdu)
            assert len(resp) == 2 and resp != b"\x90\x00"
    finally:
        _cleanup()
