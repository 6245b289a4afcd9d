"""Double-entry bookkeeping: accounts, postings, the books' invariant.

Every movement of money is one posting `(src, dst, amount)`: `amount` leaves `src` and enters
`dst`, so the balances of all accounts always add up to zero. Money is an integer count of minor
units. Accounts (see docs/LEDGER.md):

    issuer:float      contra: -(deposits - payouts): the backed value the issuer owes
    issuer:loss       contra: -(value the issuer guaranteed beyond a wallet's funds: fraud loss)
    owner:<name>      an owner's online account (deposits, payroll payer)
    wallet:<id>       offline value issued to a wallet and not yet seen spent
    staged:<id>       in flight: wallet-to-wallet transfers received offline, not yet released
    merchant:<id>     what the issuer owes a merchant (payments accepted by its POS terminals)

Only the two issuer contra accounts may be negative (the database enforces it with a CHECK).
Invariant: issued = -(issuer:float + issuer:loss) = sum of owner + wallet + staged + merchant.
"""

from __future__ import annotations

from collections.abc import Iterable

from .codec import MONEY_MAX
from .db import Tx
from .errors import LedgerError

BALANCE_MAX = MONEY_MAX  # |balance| of every account, contra ones included (CHECK in the schema)

FLOAT = "issuer:float"
LOSS = "issuer:loss"
CONTRA = (FLOAT, LOSS)
HOLDER_KINDS = ("owner", "wallet", "staged", "merchant")


def owner_acct(name: str) -> str:
    return "owner:" + name


def wallet_acct(wid: bytes) -> str:
    return "wallet:" + wid.hex()


def staged_acct(wid: bytes) -> str:
    return "staged:" + wid.hex()


def merchant_acct(mid: bytes) -> str:
    return "merchant:" + mid.hex()


def create_accounts(tx: Tx, names: Iterable[str]) -> None:
    for name in names:
        kind = name.split(":", 1)[0]
        sql = tx.ignoring_conflict("INSERT INTO accounts (name, kind, balance) VALUES (?, ?, 0)",
                                   "(name)")
        tx.execute(sql, (name, kind))


def run_ref(wallet_hex: str, lo: int, hi: int) -> str:
    """The ref of a `payment` posting for a wallet's counters lo..hi (`Book.pay`): `W:c` for
    one payment, as ever, `W:lo-hi` for a run."""
    return f"{wallet_hex}:{lo}" if lo == hi else f"{wallet_hex}:{lo}-{hi}"


def parse_run(ref: str) -> tuple[str, int, int] | None:
    """(wallet hex, lo, hi) of a `payment` posting's ref `W:c` or `W:lo-hi`; None for any
    other ref (a conflicting body's `W:c:<hash>`)."""
    w, _, rest = ref.partition(":")
    lo, _, hi = rest.partition("-")
    if not (lo.isdigit() and (not hi or hi.isdigit())):
        return None
    return w, int(lo), int(hi or lo)


class Book:
    """Postings of one transaction, buffered and written in bulk by `flush`.

    Balances of the accounts touched are read once (`balance`) and tracked in memory, so
    decisions inside a batch (does the wallet cover this payment?) see earlier postings of the
    same batch. The transaction's locks make that read stable.

    `pay` posts a wallet's payments covered in full: consecutive counters of one wallet to one
    account become ONE posting (`payment`, ref `W:lo-hi`) whose amount is their sum, each of
    them a `payments` row credited to that account (docs/LEDGER.md §2). A batch of 1,000
    payments of one wallet to one merchant is one posting, not 1,000.
    """

    def __init__(self, tx: Tx, now: int) -> None:
        self.tx = tx
        self.now = now
        self._bal: dict[str, int] = {}
        self._delta: dict[str, int] = {}
        self._rows: list[tuple[str, str, int, str, str, int]] = []
        # the open run of `pay` of each wallet account: src -> [dst, wallet hex, lo, hi, total]
        # (one at a time, closed by any other payment posting of that src, so the postings of
        # a wallet's payments stay in counter order: its statement's running balance)
        self._runs: dict[str, list] = {}

    def preload(self, names: Iterable[str]) -> None:
        want = [n for n in set(names) if n not in self._bal]
        for i in range(0, len(want), 500):
            chunk = want[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for name, bal in self.tx.all(
                f"SELECT name, balance FROM accounts WHERE name IN ({marks})", chunk
            ):
                self._bal[name] = int(bal)

    def balance(self, name: str) -> int:
        if name not in self._bal:
            self.preload([name])
            if name not in self._bal:
                raise LedgerError(500, f"no account {name}")
        return self._bal[name]

    def exists(self, name: str) -> bool:
        try:
            self.balance(name)
        except LedgerError:
            return False
        return True

    def move(self, src: str, dst: str, amount: int, kind: str, ref: str) -> None:
        if kind == "payment" and src in self._runs:
            self._close(src, self._runs.pop(src))
        self._shift(src, dst, amount, kind)
        self._rows.append((src, dst, amount, kind, ref, self.now))

    def _shift(self, src: str, dst: str, amount: int, kind: str) -> None:
        """Move `amount` between the tracked balances (the posting row is the caller's)."""
        if amount <= 0:
            raise LedgerError(500, "posting amount must be positive")
        if amount > MONEY_MAX:
            raise LedgerError(400, f"amount: at most {MONEY_MAX} minor units")
        bal = self._bal
        s = bal[src] if src in bal else self.balance(src)
        d = bal[dst] if dst in bal else self.balance(dst)
        if s - amount < -BALANCE_MAX or d + amount > BALANCE_MAX:
            raise LedgerError(409, f"{kind} refused: a balance would pass the ledger's maximum "
                                   f"{BALANCE_MAX}")
        bal[src] = s - amount
        bal[dst] = bal[dst] + amount  # src may be dst
        delta = self._delta
        delta[src] = delta.get(src, 0) - amount
        delta[dst] = delta.get(dst, 0) + amount

    def pay(self, src: str, dst: str, amount: int, wallet_hex: str, counter: int) -> None:
        """`move(src, dst, amount, "payment", W:counter)` for a wallet's payment covered in full,
        joined to the run of the same wallet's previous counter to the same account."""
        self._shift(src, dst, amount, "payment")
        run = self._runs.get(src)
        if (run is not None and run[0] == dst and run[1] == wallet_hex
                and run[3] + 1 == counter and run[4] + amount <= MONEY_MAX):
            run[3] = counter
            run[4] += amount
            return
        if run is not None:
            self._close(src, run)
        self._runs[src] = [dst, wallet_hex, counter, counter, amount]

    def _close(self, src: str, run: list) -> None:
        self._rows.append((src, run[0], run[4], "payment", run_ref(run[1], run[2], run[3]),
                           self.now))

    def flush(self) -> int:
        for src, run in self._runs.items():
            self._close(src, run)
        self._runs = {}
        n = len(self._rows)
        self.tx.insert_many("postings", ("src", "dst", "amount", "kind", "ref", "at"), self._rows)
        # Sorted: concurrent PostgreSQL transactions lock account rows in one global order.
        self.tx.executemany(
            "UPDATE accounts SET balance = balance + ? WHERE name = ?",
            [(d, name) for name, d in sorted(self._delta.items()) if d],
        )
        self._rows = []
        self._delta = {}
        return n


# Sums of many amounts can pass 2^63 (SQLite's SUM then fails with "integer overflow"): sum the
# high and low 31 bits apart, exactly, and add them up in Python.
SUM_SPLIT = "COALESCE(SUM(amount >> 31), 0), COALESCE(SUM(amount & 2147483647), 0)"


def split_total(hi: object, lo: object) -> int:
    return (int(hi) << 31) + int(lo)  # type: ignore[call-overload]


def sum_amount(tx: Tx, table: str, where: str = "1 = 1", params: tuple = ()) -> int:
    """Exact SUM(amount) of `table` rows matching `where`, whatever the total."""
    row = tx.one(f"SELECT {SUM_SPLIT} FROM {table} WHERE {where}", params)
    return split_total(*row) if row else 0


def unexplained_runs(tx: Tx) -> list[dict]:
    """The `payment` postings of a run (ref `W:lo-hi`, Book.pay) that their payments rows do not
    explain: counters lo..hi of W must all be there, each posted and credited to the posting's
    dst, their amounts adding up to the posting's."""
    out = []
    for pid, dst, amount, ref in tx.all("SELECT id, dst, amount, ref FROM postings WHERE "
                                        "kind = 'payment' AND ref LIKE '%-%'"):
        run = parse_run(ref)
        if run is None:
            continue
        try:
            wallet = bytes.fromhex(run[0])
        except ValueError:
            wallet = b""  # names no wallet: explains nothing
        n, hi, lo, ok = tx.one(
            f"SELECT COUNT(*), {SUM_SPLIT}, COALESCE(SUM(CASE WHEN credited = ? AND status = "
            "'posted' THEN 1 ELSE 0 END), 0) FROM payments WHERE wallet = ? AND counter "
            "BETWEEN ? AND ?", (dst, wallet, run[1], run[2])) or (0, 0, 0, 0)
        total = split_total(hi, lo)
        if int(n) != run[2] - run[1] + 1 or int(ok) != int(n) or total != int(amount):
            out.append({"posting": int(pid), "ref": ref, "amount": int(amount),
                        "from_payments": total})
    return out


def check_invariant(tx: Tx) -> dict:
    """Check the books; returns a report with `ok` and the figures."""
    rows = tx.all("SELECT name, kind, balance FROM accounts")
    by_kind: dict[str, int] = {}
    negative = []
    contra: dict[str, int] = {}
    for name, kind, bal in rows:
        bal = int(bal)
        if kind == "issuer":
            contra[name] = bal
        else:
            by_kind[kind] = by_kind.get(kind, 0) + bal
            if bal < 0:
                negative.append({"account": name, "balance": bal})
    issued = -sum(contra.values())
    held = sum(by_kind.values())
    # Recompute every balance from the postings: the stored balances must match.
    recomputed: dict[str, int] = {}
    for name, hi, lo in tx.all(f"SELECT dst, {SUM_SPLIT} FROM postings GROUP BY dst"):
        recomputed[name] = recomputed.get(name, 0) + split_total(hi, lo)
    for name, hi, lo in tx.all(f"SELECT src, {SUM_SPLIT} FROM postings GROUP BY src"):
        recomputed[name] = recomputed.get(name, 0) - split_total(hi, lo)
    mismatched = [
        {"account": name, "balance": int(bal), "from_postings": recomputed.get(name, 0)}
        for name, _kind, bal in rows
        if int(bal) != recomputed.get(name, 0)
    ]
    runs = unexplained_runs(tx)
    return {
        "ok": issued == held and not negative and not mismatched and not runs,
        "issued": issued,
        "backed": -contra.get(FLOAT, 0),
        "fraud_loss": -contra.get(LOSS, 0),
        "held": held,
        # the holders, and the programme accounts and purses when there are any (#13): held
        # is their sum, so the table `tapcash ledger check` prints adds up to it
        "by_kind": {k: by_kind.get(k, 0) for k in HOLDER_KINDS}
        | {k: by_kind[k] for k in sorted(by_kind) if k not in HOLDER_KINDS},
        "negative": negative,
        "mismatched": mismatched,
        "runs": runs,  # run postings their payments rows do not explain
        "postings": int(tx.scalar("SELECT COUNT(*) FROM postings", default=0)),
    }
