# Shared scaffolding of the portable app tests (test_wallet_vm, test_pos_vm, test_purse_vm,
# test_core_storage): fresh flash directories, the HAL pieces a test injects (random, clock, an
# in-process NFC link), APDU helpers and an issuer that seals certificates, vouchers and hot
# lists with proto.seal and a fixed seed (host/issuer.py is not in the VM).
#
# Portable like the tests (plain Python, no pytest, no CPython-only modules). pytest finds it on
# its pythonpath (pyproject.toml); the MicroPython VM (sim/vm/mpvm.py) and the native runner
# (tests/firmware/test_native_portable.py) install or find it next to the tests. Not a test
# module: the name does not start with test_.
import os

try:
    from tapcash.firmware.core import cbor, ed25519, hal, proto
    from tapcash.firmware.core.runtime import urandom
except ImportError:  # on a board / in the VM the firmware tree is importable as `firmware`
    from firmware.core import cbor, ed25519, hal, proto
    from firmware.core.runtime import urandom

NOW = 1800000000
PIN = b"1234"
PUK = b"12345678"

_made = []


def fresh_dir(tag):
    """A new directory name under /tmp for one flash; cleanup() removes it."""
    path = "/tmp/tc_" + tag + "_" + urandom(4).hex()
    _made.append(path)
    return path


def rm_tree(path):
    """Remove a flash directory (one level of files), if it is there."""
    try:
        names = os.listdir(path)
    except OSError:
        return
    for n in names:
        os.remove(path + "/" + n)
    os.rmdir(path)


def cleanup():
    """Remove every directory fresh_dir() handed out."""
    while _made:
        rm_tree(_made.pop())


class Rng(hal.Rng):
    def random(self, n):
        return urandom(n)


class Clock(hal.Clock):
    def __init__(self, t=NOW):
        self.t = t

    def now(self):
        return self.t


class Link(hal.Link):
    """The field, in process. tear_pay_response drops the answer to the next PAY; forge, a
    function (apdu, resp) -> resp, makes a tampered card. Counts bytes on air and round trips."""

    def __init__(self, card):
        self.card = card
        self.tear_pay_response = False
        self.forge = None
        self.air = 0
        self.trips = 0

    def transceive(self, apdu):
        resp = self.card.process(apdu)
        if self.tear_pay_response and apdu[1] == proto.INS_PAY:
            self.tear_pay_response = False
            raise hal.LinkError()
        if self.forge is not None:
            resp = self.forge(apdu, resp)
        self.air += len(apdu) + len(resp)
        self.trips += 1
        return resp


def call(app, ins, data=b"", cla=0x80, p1=0, p2=0):
    """One command APDU: (response data, status word)."""
    resp = app.process(proto.build_command(cla, ins, p1, p2, data))
    assert len(resp) >= 2
    return resp[:-2], resp[-2] << 8 | resp[-1]


def ok(app, ins, data=b"", cla=0x80, p1=0, p2=0):
    """One command APDU that must answer 9000: its response data."""
    out, sw = call(app, ins, data, cla, p1, p2)
    assert sw == 0x9000, hex(sw)
    return out


def select(app):
    """SELECT the tapcash AID: the decoded info map."""
    return cbor.decode(ok(app, proto.INS_SELECT, proto.AID, 0x00, 4))


class Issuer:
    """The issuer's signed objects, sealed with a fixed seed."""

    def __init__(self, seed):
        self.seed = seed
        self.key = ed25519.public_key(seed)

    def seal(self, tag, body):
        return proto.seal(tag, body, self.seed)

    def cert(self, kind, dev_id, pk, expires=NOW + 10**7, **fields):
        """A device certificate; fields are extra CERT_* entries (limits=, merchant=, ...)."""
        body = {
            proto.CERT_KIND: kind,
            proto.CERT_ID: dev_id,
            proto.CERT_KEY: pk,
            proto.CERT_ISSUER: proto.key_id(self.key),
            proto.CERT_EXPIRES: expires,
            proto.CERT_SERIAL: 1,
        }
        for name in fields:
            body[getattr(proto, "CERT_" + name.upper())] = fields[name]
        return self.seal(proto.TAG_CERT, body)

    def voucher(self, wallet_id, number, amount, source=proto.VSRC_TOPUP, rule=None):
        """A load voucher: into the main purse, or into purse 1 under `rule` (a sealed rule)."""
        body = {
            proto.VCH_WALLET: wallet_id,
            proto.VCH_NUMBER: number,
            proto.VCH_AMOUNT: amount,
            proto.VCH_SOURCE: source,
            proto.VCH_REF: b"",
            proto.VCH_PURSE: 0 if rule is None else 1,
        }
        if rule is not None:
            body[proto.VCH_RULE] = rule
        return self.seal(proto.TAG_VOUCHER, body)

    def hotlist(self, issued=NOW, version=1, revoked=()):
        body = {
            proto.HOT_VERSION: version,
            proto.HOT_ISSUED: issued,
            proto.HOT_REVOKED: list(revoked),
        }
        return self.seal(proto.TAG_HOTLIST, body)


def personalise_wallet(app, issuer, wallet_id, limits, expires=NOW + 10**7, pin=PIN, puk=PUK):
    """KEYGEN and FINISH on a blank wallet app (selected): (public key, certificate)."""
    pk = ok(app, proto.INS_PERSO_KEYGEN)
    cert = issuer.cert(proto.KIND_WALLET, wallet_id, pk, expires, limits=limits)
    finish = {
        proto.PF_CERT: cert,
        proto.PF_ISSUERS: [issuer.key],
        proto.PF_PIN: pin,
        proto.PF_PUK: puk,
    }
    ok(app, proto.INS_PERSO_FINISH, cbor.encode(finish))
    return pk, cert


def personalise_pos(app, issuer, pos_id, merchant, now=NOW, **fields):
    """KEYGEN and FINISH on a blank POS app (powered on), with a first empty hot list issued at
    `now`: its public key. fields are extra CERT_* entries (category=...)."""
    pk = ok(app, proto.INS_PERSO_KEYGEN)
    cert = issuer.cert(proto.KIND_POS, pos_id, pk, merchant=merchant, **fields)
    finish = {
        proto.PF_CERT: cert,
        proto.PF_ISSUERS: [issuer.key],
        proto.PF_HOTLIST: issuer.hotlist(now),
    }
    ok(app, proto.INS_PERSO_FINISH, cbor.encode(finish))
    return pk
