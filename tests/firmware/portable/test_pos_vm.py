# Portable tests for the POS app (firmware/pos) paying against the wallet app, both on
# FileFlash: run by pytest on CPython and, unchanged, inside the MicroPython VM (plain
# asserts, no pytest features, no CPython-only modules). The issuer's objects are sealed
# here with proto.seal and a fixed issuer seed (host/issuer.py is not in the VM).
try:
    from tapcash.firmware.core import cbor, fileflash, hal, proto
    from tapcash.firmware.core.runtime import sha256
    from tapcash.firmware.pos.app import PosApp
    from tapcash.firmware.wallet.app import WalletApp
except ImportError:  # on a board / in the VM the firmware tree is importable as `firmware`
    from firmware.core import cbor, fileflash, hal, proto
    from firmware.core.runtime import sha256
    from firmware.pos.app import PosApp
    from firmware.wallet.app import WalletApp
import portable_kit as kit

ISSUER = kit.Issuer(b"\x22" * 32)
WALLET_ID = b"VMWALLT2"
POS_ID = b"VMPOS002"
MERCHANT_ID = b"VMSHOP01"


def _fresh_dir():
    return kit.fresh_dir("pos")


def _wallet(root):
    app = WalletApp(hal.Hal(flash=fileflash.FileFlash(root), rng=kit.Rng()))
    kit.ok(app, proto.INS_SELECT, proto.AID, 0x00, 4)
    kit.personalise_wallet(app, ISSUER, WALLET_ID, dict(proto.DEFAULT_LIMITS))
    kit.ok(app, proto.INS_LOAD, ISSUER.voucher(WALLET_ID, 1, 20000))
    return app


def _pos(root, link):
    flash = fileflash.FileFlash(root)
    app = PosApp(hal.Hal(flash=flash, clock=kit.Clock(), rng=kit.Rng(), link=link))
    app.power_on()
    return app, kit.personalise_pos(app, ISSUER, POS_ID, MERCHANT_ID)


def test_pos_payment_tear_recovery_export_ack():
    try:
        wallet = _wallet(_fresh_dir())
        link = kit.Link(wallet)
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

        ex = cbor.decode(kit.ok(pos, proto.INS_EXPORT, cbor.encode({0: 0, 1: 10})))
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

        wrong = ISSUER.seal(
            proto.TAG_ACK,
            {proto.ACK_DEVICE: POS_ID, proto.ACK_UPTO: 2, proto.ACK_TIME: kit.NOW,
             proto.ACK_DIGEST: b"\x00" * 32},
        )
        assert pos.process(proto.build_command(0x80, proto.INS_ACK, 0, 0, wrong)) == b"\x69\x84"
        ack = ISSUER.seal(
            proto.TAG_ACK,
            {proto.ACK_DEVICE: POS_ID, proto.ACK_UPTO: 2, proto.ACK_TIME: kit.NOW,
             proto.ACK_DIGEST: digest},
        )
        kit.ok(pos, proto.INS_ACK, ack)
        info = cbor.decode(kit.ok(pos, proto.INS_GET_INFO))
        assert info[proto.INFO_SEQ] == 2 and info[proto.INFO_RECORDS] == 0

        # the card after a reboot of its own: its next counter, after the pruning too
        wallet2 = WalletApp(hal.Hal(flash=wallet.hal.flash, rng=kit.Rng()))
        link.card = wallet2
        assert pos.take_payment(100).counter == 3
    finally:
        kit.cleanup()


def test_pos_process_refuses_garbage_without_change():
    try:
        link = kit.Link(None)
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
        kit.cleanup()
