"""The independent oracle: what a run's money should look like, judged without trusting the
system under test.

The ledger, the sync tool and the firmware are what a run tests; nothing here takes their word.
The oracle keeps its own record of what happened, from what it can observe directly:

- every payment envelope a card put on the air (`CardTap`, between the field and the card),
  checked with PyNaCl under the key of the card's issuer-signed certificate;
- every deposit and load the operator asked the ledger for (`Oracle.deposit`, `Oracle.load`);
- every attack the adversary injected (`Oracle.attack`): its wallet, counters and body hashes;
- which payments a POS approved.

and checks the ledger against it (`check_ledger`, after every sync of an adversarial run, and
at the end of every run):

- value issued is the sum of the deposits we made (not the ledger's `issued = held`, which is
  an identity of double entry); vouchers of sources 1 and 3 are exactly the loads we asked for;
  a release voucher (source 2) names a transfer body a card really signed to that wallet, and of
  conflicting bodies for one (payer, counter) at most one is ever released;
- no honest wallet loses value: its ledger account never drops below what it was given minus
  what its card signed;
- spendable value (merchants' credit + owners + wallets) never exceeds value issued plus the
  documented loss bound of the attacks so far;
- a fraud proof is verified from its two signed bodies alone (`verify_proof`): both signed by
  the wallet's certified key, and the same (wallet, counter), the same chain position (`prev`),
  or adjacent counters whose link is broken, with different content. The ledger's label is
  ignored;
- every attack that reached the ledger is caught by a case matched by counter (or, for a clean
  chain that spends more than the wallet was given, a case for that wallet; or, for earmarked
  value its rule does not allow, a case holding that body), and its card is on the next hot list;
- earmarked value (`check_purses`, from the ledger's purse postings): every unit that left a purse
  account went to the programme account (a refund) or to the merchant of a payment a card
  signed, whose payee the programme's issuer-signed rule allows (judged here by our own reading of
  PROTOCOL.md §2.9, not the firmware's `core/purse.py`) at the time the card really signed it; each
  purse's postings add up (loaded = spent + refunded - reopened + balance) with loaded exactly
  what the operator asked for; an expired programme's purse is empty once its card synced after
  the expiry; and the ledger's own per-programme check (`tapcash ledger check`) holds.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import cbor2
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from tapcash.firmware.core import proto

ZERO32 = bytes(32)
MAIN_SOURCES = (proto.VSRC_TOPUP, proto.VSRC_TRANSFER, proto.VSRC_PAYROLL)


# ---- signed objects, checked on our own ----------------------------------------------------
def open_signed(env: bytes, tag: bytes, key: bytes) -> tuple[bytes, dict[int, Any]] | None:
    """(body bytes, body) of an envelope whose signature verifies under `key` (PyNaCl), or
    None. The envelope may be the CBOR bytes of [body, sig] or that array."""
    try:
        arr = cbor2.loads(env) if isinstance(env, bytes | bytearray) else env
        if tag == proto.TAG_PAYMENT and isinstance(arr, list) and len(arr) == 3:
            arr = arr[:2]  # a purse payment's answer: [body, sig, rule envelope] (PROTOCOL.md)
        body_bytes, sig = arr
        sig = bytes(sig)
        if len(sig) != 64:
            return None
        # PyNaCl's check itself (what VerifyKey.verify calls, without its wrapper objects)
        crypto_sign_open(sig + tag + bytes(body_bytes), bytes(key))
        body = cbor2.loads(body_bytes)
    except (BadSignatureError, ValueError, TypeError, cbor2.CBORDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    return bytes(body_bytes), body


class Certs:
    """Device keys from issuer-signed certificates (the only keys the oracle believes)."""

    def __init__(self, issuer_key: bytes) -> None:
        self.issuer_key = issuer_key
        self.keys: dict[bytes, bytes] = {}  # device id -> public key
        self.merchant: dict[bytes, bytes] = {}  # POS id -> merchant id
        self.category: dict[bytes, int] = {}  # POS id -> merchant category (0: none)
        self.limits: dict[bytes, dict[int, int]] = {}

    def add(self, cert_env: bytes) -> bytes:
        got = open_signed(cert_env, proto.TAG_CERT, self.issuer_key)
        if got is None:
            raise ValueError("certificate not signed by the issuer")
        body = got[1]
        dev = bytes(body[proto.CERT_ID])
        self.keys[dev] = bytes(body[proto.CERT_KEY])
        if body.get(proto.CERT_KIND) == proto.KIND_POS:
            self.merchant[dev] = bytes(body[proto.CERT_MERCHANT])
            self.category[dev] = int(body.get(proto.CERT_CATEGORY, 0) or 0)
        else:
            self.limits[dev] = {**proto.DEFAULT_LIMITS, **dict(body.get(proto.CERT_LIMITS) or {})}
        return dev


@dataclass(frozen=True)
class Signed:
    """A payment (or transfer) body a wallet signed."""

    wallet: bytes
    counter: int
    amount: int
    payee: bytes
    kind: int
    prev: bytes
    hash: bytes
    body: bytes
    env: bytes
    earmarked: int = 0  # the part an earmarked purse paid (the rest is the main purse's)
    program: bytes = b""  # the programme of that purse (b"": none)
    time: int = 0  # the payee's clock the card signed (PAY_TIME)

    @classmethod
    def verify(cls, env: bytes, certs: Certs) -> Signed | None:
        try:
            arr = cbor2.loads(env)
            body = cbor2.loads(arr[0])
            wallet = bytes(body[proto.PAY_WALLET])
        except (ValueError, TypeError, KeyError, IndexError, cbor2.CBORDecodeError):
            return None
        key = certs.keys.get(wallet)
        got = open_signed(arr, proto.TAG_PAYMENT, key) if key else None  # decoded once
        if got is None:
            return None
        bb, b = got
        try:
            return cls(
                wallet,
                int(b[proto.PAY_COUNTER]),
                int(b[proto.PAY_AMOUNT]),
                bytes(b[proto.PAY_PAYEE]),
                int(b.get(proto.PAY_KIND, 1)),
                bytes(b[proto.PAY_PREV]),
                hashlib.sha256(bb).digest(),
                bb,
                bytes(env),
                int(b.get(proto.PAY_EARMARKED, 0)),
                bytes(b.get(proto.PAY_PROGRAM, b"")),
                int(b.get(proto.PAY_TIME, 0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


def conflict(a: Signed, b: Signed) -> str | None:
    """Why two wallet-signed bodies cannot both come from an honest card, or None."""
    if a.wallet != b.wallet or a.body == b.body:
        return None
    if a.counter == b.counter:
        return "same counter"
    if a.prev == b.prev:
        return "same chain position"
    lo, hi = (a, b) if a.counter < b.counter else (b, a)
    if hi.counter == lo.counter + 1 and hi.prev != lo.hash:
        return "broken link"
    return None


# ---- earmarked purses, by our own reading of PROTOCOL.md §2.9 -----------------------------
def rule_allows(rule: dict[int, Any], merchant: bytes, category: int) -> bool:
    """The rule names this merchant id or this merchant category (time aside)."""
    return merchant in [bytes(m) for m in rule.get(proto.RULE_MERCHANTS) or []] or category in list(
        rule.get(proto.RULE_CATEGORIES) or []
    )


def rule_window(rule: dict[int, Any]) -> tuple[int, int]:
    return int(rule.get(proto.RULE_FROM, 0) or 0), int(rule[proto.RULE_EXPIRES])


def share_allowed(rule: dict[int, Any], earmarked: int, amount: int) -> bool:
    cap, unit = int(rule.get(proto.RULE_CAP, 0) or 0), int(rule.get(proto.RULE_UNIT, 0) or 0)
    return (
        1 <= earmarked <= amount
        and (not cap or earmarked <= cap)
        and (not unit or earmarked % unit == 0)
    )


def _journal_chain(value: bytes, first_seq: int, record_hashes: list[bytes]) -> bytes:
    """The journal hash chain of PROTOCOL.md §2.8 (SHA-256(tag || prev || seq u32 || record
    hash)), computed here from its definition."""
    for i, rh in enumerate(record_hashes):
        value = hashlib.sha256(
            proto.TAG_JOURNAL + value + (first_seq + i).to_bytes(4, "big") + rh
        ).digest()
    return value


def verify_rollback(
    env_a: bytes, env_b: bytes, evidence: bytes | None, certs: Certs
) -> tuple[bool, str]:
    """A rollback proof: two statuses signed by one certified device that cannot lie on one
    honest journal (the higher one's chain, walked back to the lower seq, differs from the
    lower one's digest, or agrees while a wallet's counter or vouchers applied went down)."""
    bodies = []
    for env in (env_a, env_b):
        try:
            dev = bytes(cbor2.loads(cbor2.loads(env)[0])[proto.ST_DEVICE])
        except (ValueError, TypeError, KeyError, IndexError, cbor2.CBORDecodeError):
            return False, "a status does not decode"
        got = open_signed(env, proto.TAG_STATUS, certs.keys.get(dev, b"\0" * 32))
        if got is None:
            return False, "a status does not verify under the device's certified key"
        bodies.append(got[1])
    a, b = bodies
    if a.get(proto.ST_DEVICE) != b.get(proto.ST_DEVICE) or evidence is None:
        return False, "statuses of two devices, or no chain evidence"
    try:
        ev = cbor2.loads(evidence)
        seq, link, path = int(ev[0]), bytes(ev[1]), [bytes(x) for x in ev[2]]
    except (ValueError, TypeError, KeyError, IndexError, cbor2.CBORDecodeError):
        return False, "chain evidence does not decode"
    if seq != a.get(proto.ST_SEQ) or seq + len(path) != b.get(proto.ST_SEQ):
        return False, "chain evidence does not span the two statuses"
    if _journal_chain(link, seq + 1, path) != b.get(proto.ST_DIGEST):
        return False, "chain evidence does not lead to the higher status's digest"
    if link != a.get(proto.ST_DIGEST):
        return True, "two journal histories signed by one device"
    for k in (proto.ST_COUNTER, proto.ST_LOADS):
        x, y = a.get(k), b.get(k)
        if type(x) is int and type(y) is int and y < x:
            return True, "the card's counter or vouchers went down along one journal"
    return False, "the two statuses lie on one honest journal"


def verify_proof(env_a: bytes, env_b: bytes, certs: Certs) -> tuple[bool, str]:
    """A fraud proof judged from its two signed bodies alone."""
    a, b = Signed.verify(env_a, certs), Signed.verify(env_b, certs)
    if a is None or b is None:
        return False, "a body does not verify under the wallet's certified key"
    why = conflict(a, b)
    return (why is not None), why or "the two bodies do not conflict"


# ---- the card's side of the air --------------------------------------------------------------
class CardTap:
    """Stands between a field and a card and shows the oracle every payment the card signs
    (PAY answered 9000), whether or not the reader ever receives it whole."""

    def __init__(self, card: Any, oracle: Oracle, name: str) -> None:
        self.card = card
        self.oracle = oracle
        self.name = name

    def power_on(self) -> object:
        return self.card.power_on()

    def process(self, apdu: bytes) -> bytes:
        resp = self.card.process(apdu)
        if len(apdu) > 1 and apdu[1] == proto.INS_PAY and resp[-2:] == b"\x90\x00":
            self.oracle.card_signed(resp[:-2], self.name)
        return resp


# ---- attacks as the oracle knows them ---------------------------------------------------------
@dataclass
class Attack:
    """One injected attack. `expect`: "fraud" (must become a fraud case once at the ledger),
    "harmless" (must change no money and block nothing)."""

    id: str
    kind: str
    wallet: bytes  # the attacked / attacking wallet (b"" when none)
    t: int
    expect: str = "fraud"
    bound: int = 0  # its documented loss bound (minor units)
    hashes: set[bytes] = field(default_factory=set)  # bodies it made a card sign
    counters: set[int] = field(default_factory=set)
    note: str = ""
    reached_at: int | None = None  # sync index when the ledger first held its evidence
    caught_at: int | None = None  # sync index of the first verified case matching it
    case: int | None = None


@dataclass
class Violation:
    sync: int  # index of the sync after which it was seen (-1: the final check)
    t: int
    invariant: str
    detail: str

    def line(self) -> str:
        when = "final check" if self.sync < 0 else f"after sync #{self.sync} (t={self.t}s)"
        return f"{self.invariant}: {self.detail} [{when}]"


class Oracle:
    def __init__(self, issuer_key: bytes) -> None:
        self.certs = Certs(issuer_key)
        self.deposits = 0
        self.loads: Counter[tuple[bytes, int]] = Counter()  # (wallet, amount) of source 1 / 3
        self._signed: dict[bytes, Signed] = {}  # hash -> body, every one a card put out
        self._signed_t: dict[bytes, int] = {}
        self._signed_by: dict[bytes, str] = {}  # hash -> card name
        # what cards put on the air, not checked yet (env, card name, time): see card_signed
        self._pending: list[tuple[bytes, str, int]] = []
        self.attacks: list[Attack] = []
        self.attacker_wallets: set[bytes] = set()  # wallets an attacker controls / colludes
        self.revoked_at: dict[bytes, int] = {}  # wallet -> sync index its case was seen
        self.revoked_t: dict[bytes, int] = {}  # wallet -> sim time its case was seen
        self.violations: list[Violation] = []
        self.syncs = 0
        self.now = 0
        self._unverified: list[str] = []  # envelopes a card put out that do not verify
        self.vouchers: dict[bytes, dict[int, tuple[int, int]]] = defaultdict(dict)
        self.synced: dict[bytes, int] = {}  # wallet -> highest synced counter issued to it
        self.start = 0  # absolute time of the run's t = 0 (rules carry absolute times)
        self.rules: dict[bytes, dict[int, Any]] = {}  # programme id -> issuer-signed rule body
        self.purse_loads: Counter[tuple[bytes, bytes]] = Counter()  # (programme, wallet)
        self.synced_at: dict[bytes, list[int]] = defaultdict(list)  # device -> its sync times

    # -- what cards signed: checked now, or queued and checked in a batch ---------------------
    # A tap's envelope may be queued (card_signed) and checked later, in order, by flush():
    # before anything reads what the oracle holds (signed, signed_t, signed_by, unverified: the
    # properties below flush first), before a certificate is registered (so each is checked
    # under the keys the oracle believed when the card signed it) and at the end of a run. The
    # check and its outcome are the same; only when it runs moves (a day's payments are checked
    # in one batch after the day: `tapcash bench sim` times that batch apart).
    @property
    def signed(self) -> dict[bytes, Signed]:
        if self._pending:
            self.flush()
        return self._signed

    @property
    def signed_t(self) -> dict[bytes, int]:
        if self._pending:
            self.flush()
        return self._signed_t

    @property
    def signed_by(self) -> dict[bytes, str]:
        if self._pending:
            self.flush()
        return self._signed_by

    @property
    def unverified(self) -> list[str]:
        if self._pending:
            self.flush()
        return self._unverified

    def pending(self) -> int:
        """How many envelopes are queued, not checked yet."""
        return len(self._pending)

    def card_signed(self, env: bytes, name: str) -> None:
        """What a card put on the air, queued for flush() (its time is the oracle's now)."""
        self._pending.append((env, name, self.now))

    def flush(self) -> None:
        """Check every queued envelope, in the order the cards signed them."""
        pending, self._pending = self._pending, []
        now = self.now
        try:
            for env, name, t in pending:
                self.now = t
                self._check_signed(env, name)
        finally:
            self.now = now

    # -- what happened -----------------------------------------------------------------------
    def register(self, cert_env: bytes) -> bytes:
        if self._pending:
            self.flush()
        return self.certs.add(cert_env)

    def deposit(self, amount: int) -> None:
        self.deposits += int(amount)

    def load(self, wallet: bytes, amount: int) -> None:
        self.loads[(wallet, int(amount))] += 1

    def signed_by_card(self, env: bytes, name: str) -> Signed | None:
        """Check what a card signed now (after any queued ones); the Signed, or None."""
        if self._pending:
            self.flush()
        return self._check_signed(env, name)

    def _check_signed(self, env: bytes, name: str) -> Signed | None:
        s = Signed.verify(bytes(env), self.certs)
        if s is None:
            self._unverified.append(f"{name}: {bytes(env).hex()[:32]}...")
            return None
        if s.hash not in self._signed:
            self._signed[s.hash] = s
            self._signed_t[s.hash] = self.now
            self._signed_by[s.hash] = name
        return s

    def voucher_seen(self, env: bytes) -> None:
        """A voucher on its way into a card (LOAD): issuer-signed, so its number orders the
        wallet's vouchers (what an honest card's signed balance must add up to)."""
        got = open_signed(bytes(env), proto.TAG_VOUCHER, self.certs.issuer_key)
        if got is None:
            return
        b = got[1]
        try:
            self.vouchers[bytes(b[proto.VCH_WALLET])][int(b[proto.VCH_NUMBER])] = (
                int(b[proto.VCH_AMOUNT]),
                int(b.get(proto.VCH_SOURCE, proto.VSRC_TOPUP)),
            )
        except (KeyError, TypeError, ValueError):
            return
        rule = b.get(proto.VCH_RULE)
        if isinstance(rule, bytes | list):
            self.rule_seen(rule if isinstance(rule, bytes) else cbor2.dumps(rule))

    def rule_seen(self, env: bytes) -> bytes | None:
        """A purse rule (a programme created, or inside a purse voucher): believed when the
        issuer signed it. Returns its programme id."""
        got = open_signed(bytes(env), proto.TAG_RULE, self.certs.issuer_key)
        if got is None:
            return None
        b = got[1]
        try:
            pid = bytes(b[proto.RULE_PROGRAM])
            int(b[proto.RULE_EXPIRES])
        except (KeyError, TypeError, ValueError):
            return None
        self.rules.setdefault(pid, b)
        return pid

    def purse_load(self, program: bytes, wallet: bytes, amount: int) -> None:
        """The operator asked the ledger to load this purse (a programme's CSV line)."""
        self.purse_loads[(program, wallet)] += int(amount)

    def update_seen(self, env: bytes) -> None:
        """An update on its way into a card (APPLY): the synced counter the ledger issued it
        (its guarantee covers counters up to that + the offline count, LEDGER.md rule 3)."""
        got = open_signed(bytes(env), proto.TAG_UPDATE, self.certs.issuer_key)
        if got is None:
            return
        b = got[1]
        c = b.get(proto.UPD_SYNCED_COUNTER)
        if isinstance(c, int) and not isinstance(c, bool):
            w = bytes(b.get(proto.UPD_DEVICE, b""))
            self.synced[w] = max(self.synced.get(w, 0), c)

    def prefix_sums(self, wallet: bytes) -> set[int] | None:
        """Main-purse value after each voucher, in number order (None when a number is
        missing: nothing to judge a balance against)."""
        seen = self.vouchers.get(wallet, {})
        if not seen:
            return None
        sums, total = {0}, 0
        for n in range(1, len(seen) + 1):
            if n not in seen:
                return None
            amount, source = seen[n]
            if source in MAIN_SOURCES:
                total += amount
            sums.add(total)
        return sums

    def attack(self, a: Attack) -> Attack:
        self.attacks.append(a)
        if a.wallet and a.expect == "fraud":
            self.attacker_wallets.add(a.wallet)
        return a

    def attack_signed(self, a: Attack, s: Signed | None) -> None:
        if s is not None:
            a.hashes.add(s.hash)
            a.counters.add(s.counter)

    def honest(self, wallet: bytes) -> bool:
        return wallet not in self.attacker_wallets

    def bound(self) -> int:
        return sum(a.bound for a in self.attacks)

    def _fail(self, invariant: str, detail: str, final: bool = False) -> None:
        v = Violation(-1 if final else self.syncs, self.now, invariant, detail)
        if not any(x.invariant == v.invariant and x.detail == v.detail for x in self.violations):
            self.violations.append(v)

    # -- what a wallet should hold -----------------------------------------------------------
    def paid_by(self, wallet: bytes) -> int:
        """What the wallet's main purse paid (earmarked parts are a programme's)."""
        return sum(s.amount - s.earmarked for s in self.signed.values() if s.wallet == wallet)

    def model(self, wallet: bytes, vouchers: list[list[Any]]) -> int:
        """What an honest wallet's main purse holds: its verified main-purse vouchers (top-up,
        release, payroll) minus what its card signed from it."""
        given = sum(
            int(v[1])
            for v in vouchers
            if bytes.fromhex(v[0]) == wallet and int(v[2]) in MAIN_SOURCES
        )
        return given - self.paid_by(wallet)

    # -- the checks --------------------------------------------------------------------------
    def check_ledger(self, view: dict[str, Any], *, final: bool = False) -> None:
        """Judge a snapshot of the ledger (`LedgerView.read`) against what we saw."""
        inv, books = view["invariant"], view["books"]
        fail = lambda name, detail: self._fail(name, detail, final)  # noqa: E731

        # value issued, recomputed from what we deposited
        if int(inv.get("backed", -1)) != self.deposits:
            fail(
                "issued",
                f"the ledger says {inv.get('backed')} backed, we deposited {self.deposits}",
            )
        vouchers = books.get("vouchers", [])
        given = Counter(
            (bytes.fromhex(w), int(a))
            for w, a, src, r, _ap in vouchers
            if int(src) in (proto.VSRC_TOPUP, proto.VSRC_PAYROLL)
            and not str(r).startswith("refund:")
        )
        refunded: Counter[bytes] = Counter()
        for w, a, src, ref, _ap in vouchers:
            if not str(ref).startswith("refund:"):
                continue
            s = self.signed.get(bytes.fromhex(ref.split(":", 1)[1]))
            if (
                s is None
                or s.wallet.hex() != w
                or s.amount != int(a)
                or s.payee in self.certs.keys
                or int(src) != proto.VSRC_TOPUP
            ):
                fail(
                    "vouchers",
                    f"refund {ref} of {a} to {w} names no payment its card signed "
                    f"to a payee that is no device",
                )
            else:
                refunded[s.hash] += 1
        for h, n in refunded.items():
            if n > 1:
                fail("vouchers", f"payment {h.hex()[:16]} refunded {n} times")
        if given != self.loads:
            extra = given - self.loads
            missing = self.loads - given
            fail(
                "vouchers",
                f"load vouchers differ from the loads asked for: extra "
                f"{_fmt(extra)}, missing {_fmt(missing)}",
            )
        released: dict[tuple[bytes, int], list[bytes]] = defaultdict(list)
        good_vouchers = [v for v in vouchers if int(v[2]) != proto.VSRC_TRANSFER]
        for w, a, src, ref, _ap in vouchers:
            if int(src) != proto.VSRC_TRANSFER:
                continue
            h = bytes.fromhex(ref.split(":", 1)[1]) if ref.startswith("transfer:") else b""
            s = self.signed.get(h)
            rx = bytes.fromhex(w)
            if s is None or s.kind != proto.PAYKIND_TRANSFER or s.payee != rx or s.amount != int(a):
                fail("release", f"voucher {ref} of {a} to {w} names no transfer a card signed")
                continue
            released[(s.wallet, s.counter)].append(h)
            good_vouchers.append([w, a, src, ref, _ap])
            if self.signed_t[h] > self.revoked_t.get(s.wallet, 1 << 62):
                fail(
                    "release",
                    f"transfer {s.wallet.hex()}:{s.counter} signed after the "
                    f"payer's revocation was known was released",
                )
        for (w, c), hs in released.items():
            if len(hs) > 1:
                fail(
                    "release",
                    f"{len(hs)} conflicting transfer bodies of {w.hex()}:{c} "
                    f"released (at most one may be)",
                )

        # honest wallets keep their value
        balances = books.get("balances", {})
        for w in sorted(self.certs.limits):
            if not self.honest(w):
                continue
            acct = int(balances.get(f"wallet:{w.hex()}", 0))
            model = self.model(w, good_vouchers)
            if acct < model:
                fail(
                    "honest_wallet",
                    f"wallet {w.hex()}: the ledger holds {acct}, it was given "
                    f"{model + self.paid_by(w)} and signed "
                    f"{self.paid_by(w)}",
                )

        # spendable value never exceeds what was issued plus the loss bound
        spendable = int(inv.get("by_kind", {}).get("owner", 0))
        spendable += sum(int(m.get("credited", 0)) for m in view["merchants"])
        for w in self.certs.limits:
            if self.honest(w):
                spendable += max(0, self.model(w, good_vouchers))
            else:
                spendable += int(balances.get(f"wallet:{w.hex()}", 0))
        if spendable > self.deposits + self.bound():
            fail(
                "spendable",
                f"spendable value {spendable} > issued {self.deposits} + loss bound {self.bound()}",
            )

        # fraud: every attack at the ledger is a verified case within one sync cycle
        self._check_fraud(view, final)
        self.check_purses(view, final)

    # -- earmarked value -----------------------------------------------------------------------
    def purse_refusal(self, s: Signed) -> str | None:
        """Why no honest card signs this payment's earmarked part under the programme's
        issuer-signed rule, or None when the part follows the rule (judged by the time it
        names: the payee's clock the card was shown)."""
        if not s.program:
            return None
        rule = self.rules.get(s.program)
        if rule is None or (s.program, s.wallet) not in self.purse_loads:
            return f"programme {s.program.hex()} was never loaded onto this card"
        if s.kind != proto.PAYKIND_POS:
            return "earmarked value in a wallet-to-wallet transfer"
        merchant = self.certs.merchant.get(s.payee)
        if merchant is None:
            return f"payee {s.payee.hex()} is no registered POS"
        if not rule_allows(rule, merchant, self.certs.category.get(s.payee, 0)):
            return (
                f"the rule does not allow merchant {merchant.hex()} (category "
                f"{self.certs.category.get(s.payee, 0)})"
            )
        if not share_allowed(rule, s.earmarked, s.amount):
            return f"an earmarked part of {s.earmarked} of {s.amount} breaks the cap or unit"
        lo, hi = rule_window(rule)
        if not s.time or not lo <= s.time <= hi:
            return f"signed with time {s.time}, outside the rule's window [{lo}, {hi}]"
        return None

    def _body_of(self, ref: str, books: dict[str, Any]) -> Signed | None:
        """The card-signed body a posting ref names (`wallet:counter[:hash prefix]`)."""
        parts = ref.split(":")
        try:
            w, c = bytes.fromhex(parts[0]), int(parts[1])
        except (ValueError, IndexError):
            return None
        if len(parts) == 2:
            for pw, pc, h, _st, _cr in books.get("payments", []):
                if pw == w.hex() and int(pc) == c:
                    return self.signed.get(bytes.fromhex(h))
            return None
        for x in self.signed.values():
            if x.wallet == w and x.counter == c and x.hash.hex().startswith(parts[2]):
                return x
        return None

    def _synced_between(self, dev: bytes, lo: int, hi: int) -> bool:
        return any(lo < self.start + t < hi for t in self.synced_at.get(dev, ()))

    def check_purses(self, view: dict[str, Any], final: bool) -> None:
        """Earmarked value went only where its rule allows, and every purse adds up."""
        posts = view.get("purse_postings")
        if posts is None:
            return
        fail = lambda detail: self._fail("earmarked", detail, final)  # noqa: E731
        progs = view["invariant"].get("programs")
        if isinstance(progs, dict) and not progs.get("ok", True):
            self._fail("programme_books", f"tapcash ledger check: {progs.get('problems')}", final)
        books = view["books"]
        balances = books.get("balances", {})
        flows: dict[tuple[bytes, bytes], Counter[str]] = defaultdict(Counter)
        credited: Counter[tuple[bytes, str]] = Counter()  # (programme, ref) -> to merchants
        for src, dst, amount, kind, ref in posts:
            amount = int(amount)
            why = programme_flow(src, dst, kind)
            if why is not None:
                fail(f"{kind} {ref}: {amount} from {src} to {dst}: {why}")
                continue
            if kind == "purse_load":
                flows[_purse_of(dst)]["loaded"] += amount
            elif kind == "purse_late":  # a late payment after the return: reopened by the issuer
                flows[_purse_of(dst)]["reopened"] += amount
            elif kind in ("purse_refund", "purse_reopen"):
                key = _purse_of(src if kind == "purse_refund" else dst)
                other = dst if kind == "purse_refund" else src
                flows[key]["refunded" if kind == "purse_refund" else "reopened"] += amount
                if other != f"program:{key[0].hex()}":
                    fail(
                        f"{kind} {ref}: {amount} of purse {key[0].hex()}:{key[1].hex()} "
                        f"moved to {other}, not its programme account"
                    )
            elif kind in ("purse_spend", "purse_release", "purse_guarantee"):
                s = self._body_of(ref, books)
                if s is None or not s.program:
                    fail(
                        f"{kind} {ref}: {amount} to {dst} names no earmarked payment a card signed"
                    )
                    continue
                if kind != "purse_guarantee":
                    key = _purse_of(src)
                    flows[key]["spent"] += amount
                    if key != (s.program, s.wallet):
                        fail(
                            f"{kind} {ref}: paid from purse {key[0].hex()}:{key[1].hex()}, "
                            f"the card signed programme {s.program.hex()}"
                        )
                credited[(s.program, ref)] += amount
                why = self.purse_refusal(s)
                merchant = self.certs.merchant.get(s.payee, b"")
                if why is None and dst != f"merchant:{merchant.hex()}":
                    why = f"credited to {dst}, the payee is merchant {merchant.hex()}"
                if why is None:
                    why = self._late(s)
                if why is not None:
                    fail(
                        f"{kind} {ref}: {amount} of programme {s.program.hex()} moved to {dst}:"
                        f" {why}"
                    )
                elif credited[(s.program, ref)] > s.earmarked:
                    fail(
                        f"{ref}: {credited[(s.program, ref)]} of programme "
                        f"{s.program.hex()} credited, the card's earmarked part is "
                        f"{s.earmarked}"
                    )
        now = self.start + self.now
        for key in set(flows) | set(self.purse_loads):
            pid, wid = key
            f = flows[key]
            acct = f"purse:{pid.hex()}:{wid.hex()}"
            bal = int(balances.get(acct, 0))
            if f["loaded"] != self.purse_loads[key]:
                fail(
                    f"{acct}: the ledger loaded {f['loaded']}, the operator asked for "
                    f"{self.purse_loads[key]}"
                )
            if bal < 0 or f["loaded"] - f["spent"] - f["refunded"] + f["reopened"] != bal:
                fail(
                    f"{acct}: loaded {f['loaded']} - spent {f['spent']} - refunded "
                    f"{f['refunded']} + reopened {f['reopened']} != balance {bal}"
                )
            rule = self.rules.get(pid)
            if (
                final
                and rule is not None
                and bal
                and now > rule_window(rule)[1]
                and self._synced_between(wid, rule_window(rule)[1], now + 1)
            ):
                fail(
                    f"{acct}: expired at {rule_window(rule)[1]}, its card synced since, "
                    f"and it still holds {bal} (not refunded to the funder)"
                )

    def _late(self, s: Signed) -> str | None:
        """None when the card signed this earmarked part within its rule's window by the
        run's own clock (not the POS's), or within the documented wrong-clock bound
        (docs/LEDGER.md §6: neither the payee POS nor the card synced since the expiry)."""
        rule = self.rules[s.program]
        lo, hi = rule_window(rule)
        t = self.start + self.signed_t.get(s.hash, self.now)
        if lo <= t <= hi:
            return None
        if (
            t > hi
            and not self._synced_between(s.payee, hi, t)
            and not self._synced_between(s.wallet, hi, t)
        ):
            return None  # neither side could tell: the documented bound
        return (
            f"signed at {t} (the POS said {s.time}), outside [{lo}, {hi}], after "
            f"{'the POS' if self._synced_between(s.payee, hi, t) else 'the card'} synced "
            f"past the expiry"
        )

    def judge_case(self, case: dict[str, Any], books: dict[str, Any]) -> tuple[bool, str]:
        """A fraud case, verified on our own. Two conflicting wallet-signed bodies prove a
        double spend by themselves. A case with no conflict (a clean chain that spends more
        than the wallet was ever given: an extracted key, or a rewritten balance) is verified
        from its signed body against value we recomputed: the chain leading to it, as the cards
        signed it, spends more than all the wallet's main-purse vouchers, or its signed
        balance plus that spend claims more than they add up to."""
        env_a, env_b = _b64(case["proof_a"]), _b64(case["proof_b"])
        if case.get("kind") == "rollback" or case.get("evidence"):
            ev = case.get("evidence")
            return verify_rollback(env_a, env_b, _b64(ev) if ev else None, self.certs)
        if case.get("kind") in ("purse_rule", "purse_expired"):
            # one wallet-signed body whose earmarked part no honest card signs
            s = Signed.verify(env_b, self.certs)
            if s is None or Signed.verify(env_a, self.certs) is None:
                return False, "the body does not verify under the wallet's certified key"
            why = self.purse_refusal(s)
            return (why is not None), why or "its earmarked part follows its rule"
        ok, why = verify_proof(env_a, env_b, self.certs)
        if ok:
            return ok, why
        b = Signed.verify(env_b, self.certs)
        if b is None or Signed.verify(env_a, self.certs) is None:
            return False, why
        given = sum(
            int(v[1])
            for v in books.get("vouchers", [])
            if bytes.fromhex(v[0]) == b.wallet and int(v[2]) in MAIN_SOURCES
        )
        by_hash = {s.hash: s for s in self.signed.values() if s.wallet == b.wallet}
        spent, cur, seen, last = 0, b, set(), b
        while cur is not None and cur.hash not in seen:
            seen.add(cur.hash)
            spent += cur.amount - cur.earmarked
            last, cur = cur, by_hash.get(cur.prev)
        if spent > given:
            return True, f"the chain to counter {b.counter} spends {spent} of {given} given"
        held = {bytes.fromhex(p[2]) for p in books.get("payments", []) if p[0] == b.wallet.hex()}
        spent_all = sum(x.amount - x.earmarked for h, x in by_hash.items() if h in held)
        if spent_all > given:  # bodies that arrived in another order: one of them is uncovered
            return True, f"its signed bodies at the ledger spend {spent_all} of {given} given"
        bal = cbor2.loads(b.body).get(proto.PAY_BALANCE)
        if isinstance(bal, int) and bal + spent > given:
            return (
                True,
                f"counter {b.counter} claims balance {bal} after spending {spent} of {given} given",
            )
        sums = self.prefix_sums(b.wallet)
        complete = last.counter == 1 and last.prev == ZERO32  # the whole chain is known
        if isinstance(bal, int) and sums is not None and complete and bal + spent not in sums:
            return (
                True,
                f"counter {b.counter} signs balance {bal} after spending {spent}: "
                f"no count of the vouchers it was given ({sorted(sums)}) adds up",
            )
        return False, why + "; nor does the chain overspend what the wallet was given"

    def _check_fraud(self, view: dict[str, Any], final: bool) -> None:
        books = view["books"]
        stored: dict[bytes, Signed] = {}
        at_ledger = {bytes.fromhex(p[2]) for p in books.get("payments", [])}
        cases = []
        for case in view["fraud"]:
            ok, why = self.judge_case(case, books)
            case["proof_verified"] = ok
            case["proof_why"] = why
            a = Signed.verify(_b64(case["proof_a"]), self.certs)
            b = Signed.verify(_b64(case["proof_b"]), self.certs)
            for s in (a, b):
                if s is not None:
                    at_ledger.add(s.hash)
                    stored[s.hash] = s
            if not ok:
                self._fail(
                    "proof",
                    f"case {case['case']} ({case['kind']}) of {case['wallet']}: {why}",
                    final,
                )
                continue
            cases.append((case, a, b))
            w = bytes.fromhex(case["wallet"])
            if w not in self.revoked_at:
                self.revoked_at[w] = self.syncs
                self.revoked_t[w] = self.now
        for h in at_ledger:
            if h in self.signed:
                stored[h] = self.signed[h]
        by_wallet: dict[bytes, list[Signed]] = defaultdict(list)
        for s in stored.values():
            by_wallet[s.wallet].append(s)
        for atk in self.attacks:
            if atk.expect != "fraud" or not atk.hashes:
                continue
            reached = any(h in at_ledger for h in atk.hashes)
            if not reached:
                continue
            evidence = self._evidence(atk, by_wallet.get(atk.wallet, []), view)
            if evidence is None:
                continue  # nothing at the ledger proves it yet (the other copy not synced)
            if atk.reached_at is None:
                atk.reached_at = self.syncs
            if atk.caught_at is None:
                for case, a, b in cases:
                    if bytes.fromhex(case["wallet"]) != atk.wallet:
                        continue
                    if a is None or b is None:  # a rollback case: two statuses of the card
                        if atk.kind.startswith("rollback"):
                            atk.caught_at, atk.case = self.syncs, int(case["case"])
                            break
                        continue
                    mine = [self.signed[h] for h in atk.hashes if h in self.signed]
                    if (
                        evidence == "overspent"
                        or {a.counter, b.counter} & atk.counters
                        or {a.hash, b.hash} & atk.hashes
                        or any(conflict(x, y) for x in (a, b) for y in mine)
                    ):  # same fork
                        atk.caught_at, atk.case = self.syncs, int(case["case"])
                        break
            if atk.caught_at is None and (final or self.syncs > atk.reached_at):
                self._fail(
                    "caught",
                    f"{atk.id} ({atk.kind}) of {atk.wallet.hex()}: its "
                    f"{evidence} is at the ledger since sync #{atk.reached_at}, "
                    f"no verified fraud case names counters "
                    f"{sorted(atk.counters)}",
                    final,
                )

    def _evidence(self, atk: Attack, bodies: list[Signed], view: dict[str, Any]) -> str | None:
        """What at the ledger proves the attack: two conflicting bodies, or a chain that spends
        more than the wallet was ever given."""
        for a in bodies:
            if a.hash not in atk.hashes:
                continue
            for b in bodies:
                if b is not a and conflict(a, b):
                    return "double spend"
            if a.program and self.purse_refusal(a):
                return "earmarked value its rule does not allow"
        given = sum(
            int(v[1])
            for v in view["books"].get("vouchers", [])
            if bytes.fromhex(v[0]) == atk.wallet and int(v[2]) in MAIN_SOURCES
        )
        if sum(b.amount - b.earmarked for b in bodies) > given:
            return "overspent"
        return None

    def check_hotlist(self, hot_env: bytes, pos_version: int, pos_name: str) -> None:
        """After a POS sync: its hot list must carry every wallet with a case seen at an
        earlier sync (the next hot list after the case)."""
        got = open_signed(hot_env, proto.TAG_HOTLIST, self.certs.issuer_key)
        if got is None:
            self._fail("hotlist", "the ledger's hot list does not verify under the issuer key")
            return
        body = got[1]
        listed = {bytes(x) for x in body.get(proto.HOT_REVOKED, [])}
        version = int(body.get(proto.HOT_VERSION, 0))
        for w, at in self.revoked_at.items():
            if at < self.syncs and w not in listed:
                self._fail(
                    "hotlist",
                    f"wallet {w.hex()} has a fraud case since sync #{at}, "
                    f"not on hot list v{version}",
                )
        if (
            self.revoked_at
            and pos_version < version
            and any(at < self.syncs for at in self.revoked_at.values())
        ):
            self._fail(
                "hotlist",
                f"{pos_name} holds hot list v{pos_version} after its sync, "
                f"the ledger's is v{version}",
            )


def programme_flow(src: str, dst: str, kind: str) -> str | None:
    """Why a posting into or out of a purse or programme account is no move a programme makes
    (docs/LEDGER.md §6, by the accounts it joins, whatever its label says), or None. Which
    merchant a spend may reach is judged apart, from the body the card signed."""

    def prog(a: str) -> str | None:
        return a.split(":")[1] if a.startswith("program:") and a.count(":") == 1 else None

    def purse(a: str) -> str | None:
        return a.split(":")[1] if a.startswith("purse:") and a.count(":") == 2 else None

    ok = {
        "program_fund": src.startswith("owner:") and prog(dst) is not None,
        "purse_load": prog(src) is not None and prog(src) == purse(dst),
        "purse_reopen": prog(src) is not None and prog(src) == purse(dst),
        "purse_refund": purse(src) is not None and purse(src) == prog(dst),
        "purse_spend": purse(src) is not None and dst.startswith("merchant:"),
        "purse_release": purse(src) is not None and dst.startswith("merchant:"),
        "purse_guarantee": src == "issuer:loss" and dst.startswith("merchant:"),
        "program_return": prog(src) is not None and dst.startswith("owner:"),
        "purse_late": src == "issuer:loss" and purse(dst) is not None,
    }.get(kind)
    if ok is None:
        return "no programme moves earmarked value by such a posting"
    return None if ok else f"a {kind} does not join these accounts"


def _purse_of(acct: str) -> tuple[bytes, bytes]:
    """(programme id, wallet id) of a `purse:<programme>:<wallet>` account."""
    _, pid, wid = acct.split(":")
    return bytes.fromhex(pid), bytes.fromhex(wid)


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


def _fmt(c: Counter[tuple[bytes, int]]) -> str:
    return ", ".join(f"{w.hex()}:{a}x{n}" for (w, a), n in sorted(c.items())) or "none"
