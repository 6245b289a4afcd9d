# Portable tests for the wallet app (firmware/wallet) on FileFlash: run by pytest on CPython
# and, unchanged, inside the MicroPython VM (plain asserts, no pytest features, no
# CPython-only modules). host/issuer.py is not available in the VM, so the issuer's objects
# are sealed here with proto.seal and a fixed issuer seed.
try:
    from tapcash.firmware.core import cbor, fileflash, hal, proto
    from tapcash.firmware.core.runtime import sha256, urandom
    from tapcash.firmware.wallet.app import WalletApp
    from tapcash.sim.device.cutflash import CutFlash
except ImportError:  # on a board / in the VM the firmware tree is importable as `firmware`
    from cutflash import CutFlash  # sim/device/cutflash.py, installed next to the tests

    from firmware.core import cbor, fileflash, hal, proto
    from firmware.core.runtime import sha256, urandom
    from firmware.wallet.app import WalletApp
from portable_kit import Issuer, Rng, call, cleanup, fresh_dir, personalise_wallet, select

ISSUER = Issuer(b"\x11" * 32)
WALLET_ID = b"VMWALLET"
POS_ID = b"VMPOS001"
PIN = b"2468"
PUK = b"13572468"
EXPIRES = 2000000000


def _fresh_dir():
    return fresh_dir("wallet")


def _send(app, cla, ins, p1=0, p2=0, data=b""):
    return call(app, ins, data, cla, p1, p2)


def _ok(app, cla, ins, p1=0, p2=0, data=b""):
    out, sw = call(app, ins, data, cla, p1, p2)
    assert sw == 0x9000, hex(sw)
    return out


def _personalise(flash):
    app = WalletApp(hal.Hal(flash=flash, rng=Rng()))
    info = select(app)
    assert info == {proto.INFO_VERSION: proto.VERSION, proto.INFO_FLAGS: proto.FLAG_BLANK}
    limits = {proto.LIM_NO_CVM: 3000}
    pk, cert = personalise_wallet(app, ISSUER, WALLET_ID, limits, EXPIRES, PIN, PUK)
    voucher = ISSUER.voucher(WALLET_ID, 1, 10000)
    assert cbor.decode(_ok(app, 0x80, proto.INS_LOAD, data=voucher)) == {0: 10000}
    return app, pk, cert


def _pay_request(challenge, amount, pin=None):
    req = {
        proto.REQ_CHALLENGE: challenge,
        proto.REQ_AMOUNT: amount,
        proto.REQ_PAYEE: POS_ID,
        proto.REQ_TIME: 1800000000,
        proto.REQ_KIND: proto.PAYKIND_POS,
    }
    if pin is not None:
        req[proto.REQ_PIN] = pin
    return cbor.encode(req)


def test_personalise_pay_and_verify():
    try:
        root = _fresh_dir()
        app, pk, cert = _personalise(fileflash.FileFlash(root))
        info = select(app)
        assert info[proto.INFO_ID] == WALLET_ID and info[proto.INFO_CERT] == cert
        chal = bytes(range(16))
        env = _ok(app, 0x80, proto.INS_PAY, data=_pay_request(chal, 1250))
        body = proto.verify_envelope(proto.TAG_PAYMENT, env, pk)
        assert body[proto.PAY_WALLET] == WALLET_ID
        assert body[proto.PAY_COUNTER] == 1
        assert body[proto.PAY_AMOUNT] == 1250
        assert body[proto.PAY_PAYEE] == POS_ID
        assert body[proto.PAY_CHALLENGE] == chal
        assert body[proto.PAY_PREV] == b"\x00" * 32
        assert body[proto.PAY_BALANCE] == 8750
        # idempotent retry: the same bytes, no new counter
        assert _ok(app, 0x80, proto.INS_PAY, data=_pay_request(chal, 1250)) == env
        _o, sw = _send(app, 0x80, proto.INS_PAY, data=_pay_request(chal, 1251))
        assert sw == proto.SW_CONDITIONS
        # above the no-CVM limit: PIN needed, a wrong one costs a try
        _o, sw = _send(app, 0x80, proto.INS_PAY, data=_pay_request(urandom(16), 4000))
        assert sw == proto.SW_SECURITY
        _o, sw = _send(app, 0x80, proto.INS_PAY, data=_pay_request(urandom(16), 4000, b"0000"))
        assert sw == 0x63C2
        env2 = _ok(app, 0x80, proto.INS_PAY, data=_pay_request(urandom(16), 4000, PIN))
        body2 = proto.verify_envelope(proto.TAG_PAYMENT, env2, pk)
        body_bytes = cbor.decode(env)[0]
        assert body2[proto.PAY_PREV] == sha256(body_bytes).digest()  # the hash chain
        assert body2[proto.PAY_BALANCE] == 4750
        # a reboot on the same files: same state, same last payment, export with a status
        app = WalletApp(hal.Hal(flash=fileflash.FileFlash(root), rng=Rng()))
        info = select(app)
        assert info[proto.INFO_COUNTER] == 2
        assert _ok(app, 0x80, proto.INS_GET_LAST) == env2
        ex = cbor.decode(_ok(app, 0x80, proto.INS_EXPORT, data=cbor.encode({0: 0, 1: 10})))
        types = [cbor.decode(raw)[proto.REC_TYPE] for _seq, raw in ex[proto.EXP_RECORDS]]
        assert types == [proto.RT_LOAD, proto.RT_PAYMENT, proto.RT_PAYMENT]
        assert cbor.decode(ex[proto.EXP_RECORDS][1][1])[proto.REC_SIGNED] == env
        status = proto.verify_envelope(proto.TAG_STATUS, ex[proto.EXP_STATUS], pk)
        assert status[proto.ST_COUNTER] == 2 and status[proto.ST_BALANCE] == 4750
        assert status[proto.ST_SEQ] == 3
        assert status[proto.ST_DIGEST] == _chain(ex[proto.EXP_RECORDS])
    finally:
        cleanup()


def test_power_cut_after_commit_rebuilds_the_journal_record():
    try:
        root = _fresh_dir()
        app, pk, _cert = _personalise(fileflash.FileFlash(root))
        # PAY writes the state (1) and appends the journal record (2): cut the append
        torn = CutFlash(fileflash.FileFlash(root))
        torn.cut_at(2, 0)
        app = WalletApp(hal.Hal(flash=torn, rng=Rng()))
        select(app)
        chal = b"\x42" * 16
        try:
            app.process(proto.build_command(0x80, proto.INS_PAY, 0, 0, _pay_request(chal, 99)))
            raise AssertionError("no power cut")
        except hal.PowerCut:
            pass
        app = WalletApp(hal.Hal(flash=fileflash.FileFlash(root), rng=Rng()))
        info = select(app)
        assert info[proto.INFO_COUNTER] == 1 and info[proto.INFO_LAST_CHALLENGE] == chal
        env = _ok(app, 0x80, proto.INS_PAY, data=_pay_request(chal, 99))
        proto.verify_envelope(proto.TAG_PAYMENT, env, pk)
        ex = cbor.decode(_ok(app, 0x80, proto.INS_EXPORT, data=b""))
        last = cbor.decode(ex[proto.EXP_RECORDS][-1][1])
        assert last == {proto.REC_TYPE: proto.RT_PAYMENT, proto.REC_SIGNED: env}
        assert len(ex[proto.EXP_RECORDS]) == 2  # load + this payment, once
    finally:
        cleanup()


def _chain(records):
    """The journal chain value after `records` [[seq, bytes]], computed here (from seq 1)."""
    digest = b"\x00" * 32
    for seq, raw in records:
        h = sha256(proto.TAG_JOURNAL + digest + bytes((0, 0, seq >> 8, seq & 0xFF)))
        h.update(sha256(raw).digest())
        digest = h.digest()
    return digest


def _wallet(root, wallet_id, amount):
    """A personalised wallet `wallet_id` on FileFlash at root, loaded with `amount`."""
    app = WalletApp(hal.Hal(flash=fileflash.FileFlash(root), rng=Rng()))
    select(app)
    pk, cert = personalise_wallet(app, ISSUER, wallet_id, {}, EXPIRES, PIN, PUK)
    if amount:
        _ok(app, 0x80, proto.INS_LOAD, data=ISSUER.voucher(wallet_id, 1, amount))
    return app, pk, cert


def test_transfer_receipt_ack_apply():
    try:
        payer, payer_pk, payer_cert = _wallet(_fresh_dir(), b"VMPAYER1", 5000)
        payee, _pk, _cert = _wallet(_fresh_dir(), b"VMPAYEE1", 0)
        # staged transfer: receiver's challenge, payer's PAY kind 2, receiver's RECEIVE
        chal = _ok(payee, 0x00, proto.INS_CHALLENGE)
        assert len(chal) == 16
        req = {
            proto.REQ_CHALLENGE: chal,
            proto.REQ_AMOUNT: 1200,
            proto.REQ_PAYEE: b"VMPAYEE1",
            proto.REQ_TIME: 0,
            proto.REQ_KIND: proto.PAYKIND_TRANSFER,
        }
        env = _ok(payer, 0x80, proto.INS_PAY, data=cbor.encode(req))
        proto.verify_envelope(proto.TAG_PAYMENT, env, payer_pk)
        _ok(payee, 0x80, proto.INS_RECEIVE, data=cbor.encode([env, payer_cert]))
        _ok(payee, 0x80, proto.INS_RECEIVE, data=cbor.encode([env, payer_cert]))  # idempotent
        _o, sw = _send(payee, 0x80, proto.INS_PAY, data=_pay_request(urandom(16), 1))
        assert sw == proto.SW_FUNDS  # staged: not spendable
        voucher = ISSUER.voucher(b"VMPAYEE1", 1, 1200, proto.VSRC_TRANSFER)
        assert cbor.decode(_ok(payee, 0x80, proto.INS_LOAD, data=voucher)) == {0: 1200}
        _o, sw = _send(payee, 0x80, proto.INS_LOAD, data=voucher)
        assert sw == proto.SW_REPLAY
        # a POS payment and its receipt (the wallet checks the fields, not the POS signature)
        pay_env = _ok(payee, 0x80, proto.INS_PAY, data=_pay_request(urandom(16), 200))
        pay_body = cbor.decode(pay_env)[0]
        receipt = {
            proto.RCPT_POS: POS_ID,
            proto.RCPT_WALLET: b"VMPAYEE1",
            proto.RCPT_COUNTER: 1,
            proto.RCPT_AMOUNT: 200,
            proto.RCPT_PAYMENT_HASH: sha256(pay_body).digest(),
            proto.RCPT_SEQ: 1,
            proto.RCPT_TIME: 0,
        }
        _ok(
            payee,
            0x80,
            proto.INS_RECEIPT,
            data=proto.seal(proto.TAG_RECEIPT, receipt, b"\x22" * 32),
        )
        # one receipt per payment, ever: another one (a rogue reader's) is refused
        receipt[proto.RCPT_SEQ] = 2
        _o, sw = _send(payee, 0x80, proto.INS_RECEIPT,
                       data=proto.seal(proto.TAG_RECEIPT, receipt, b"\x23" * 32))
        assert sw == proto.SW_CONDITIONS
        ex = cbor.decode(_ok(payee, 0x80, proto.INS_EXPORT, data=b""))
        types = [cbor.decode(raw)[proto.REC_TYPE] for _seq, raw in ex[proto.EXP_RECORDS]]
        assert types == [proto.RT_TRANSFER_IN, proto.RT_LOAD, proto.RT_PAYMENT, proto.RT_RECEIPT]
        # ack: prune up to seq 3 only when its digest is the card's chain there; beyond the
        # last seq is refused
        ack = {proto.ACK_DEVICE: b"VMPAYEE1", proto.ACK_UPTO: 3, proto.ACK_TIME: 0,
               proto.ACK_DIGEST: _chain(ex[proto.EXP_RECORDS][:2])}
        _o, sw = _send(payee, 0x80, proto.INS_ACK, data=ISSUER.seal(proto.TAG_ACK, ack))
        assert sw == proto.SW_DATA_INVALID  # the digest at seq 2: other records
        ack[proto.ACK_DIGEST] = _chain(ex[proto.EXP_RECORDS][:3])
        _ok(payee, 0x80, proto.INS_ACK, data=ISSUER.seal(proto.TAG_ACK, ack))
        ack[proto.ACK_UPTO] = 9
        _o, sw = _send(payee, 0x80, proto.INS_ACK, data=ISSUER.seal(proto.TAG_ACK, ack))
        assert sw == proto.SW_DATA_INVALID
        ex = cbor.decode(_ok(payee, 0x80, proto.INS_EXPORT, data=b""))
        assert [seq for seq, _rec in ex[proto.EXP_RECORDS]] == [4]
        # apply: offline counters synced, PIN unblocked
        for _ in range(3):
            _send(payee, 0x00, proto.INS_VERIFY_PIN, 0, 0x80, b"0000")
        info = select(payee)
        assert info[proto.INFO_FLAGS] & proto.FLAG_PIN_BLOCKED
        assert info[proto.INFO_OFFLINE_LEFT] == 9
        upd = {
            proto.UPD_DEVICE: b"VMPAYEE1",
            proto.UPD_NUMBER: 1,
            proto.UPD_SYNCED_COUNTER: 1,
            proto.UPD_SYNCED_SPENT: 200,
            proto.UPD_UNBLOCK_PIN: True,
        }
        _ok(payee, 0x80, proto.INS_APPLY, data=ISSUER.seal(proto.TAG_UPDATE, upd))
        info = select(payee)
        assert info[proto.INFO_FLAGS] == 0 and info[proto.INFO_OFFLINE_LEFT] == 10
        _o, sw = _send(
            payee, 0x80, proto.INS_APPLY, data=ISSUER.seal(proto.TAG_UPDATE, upd)
        )
        assert sw == proto.SW_REPLAY
        _ok(payee, 0x00, proto.INS_VERIFY_PIN, 0, 0x80, PIN)
        assert cbor.decode(_ok(payee, 0x80, proto.INS_GET_INFO))[proto.INFO_BALANCE] == 1000
    finally:
        cleanup()
