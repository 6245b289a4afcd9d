# PAY (80 50 00 00, data = CBOR request map): sign one payment (kind 1, to a POS) or one
# transfer (kind 2, to another wallet).
#
# Checks, in the order of PROTOCOL.md §5.1; then the new state (counter + 1, balance, chain
# head, spent, last challenge, last body) is committed in ONE flash write before anything is
# signed, and the journal record is appended after the signature. A retry with the challenge
# of the last payment and the same amount, payee, kind and purse re-signs the stored body:
# Ed25519 is deterministic, so the envelope is byte-identical and no counter moves.
#
# Staged value (received from other wallets, not yet released by the ledger) is spendable
# only up to LIM_STAGED_SPEND in total until released: the balance goes first, the rest comes
# out of `pending` and is remembered in S_STAGED_USED (see load.py for the release).
#
# Earmarked purses (PROTOCOL.md §2.9, §4.2): a payment to a POS that sent its certificate
# (REQ_PAYEE_CERT) is paid from the first earmarked purse whose rule allows that POS's
# merchant id or category at the POS's time, as far as the purse (its cap, its unit) covers
# it; the main purse pays the rest, in the same signed payment (PAY_PROGRAM, PAY_EARMARKED,
# PAY_PURSE_BALANCE). The answer then carries the rule envelope as a third array element, so
# the POS can check the same rule. REQ_PURSE 0 pays from the main purse only; k asks for
# purse k and is refused (6918) when its rule does not allow this payment.
from ..core import apdu, cbor, check, fields
from ..core.apdu import ApduError
from ..core.runtime import sha256
from ..core.units import money
from . import state as st
from .app import decode_map

_SIGN_FAILED = ApduError(apdu.SW_INTERNAL)  # made now: raising it needs no RAM


def handle(app, p1, p2, data):
    # The signer's modules and the state's buffer first (the card signs every PAY): placed
    # before the command's short-lived objects, they do not have to find room among them
    # after the commit (#16). A purse card places them after the purse choice instead (_pay):
    # its POS certificate check then has their heap, and the choice's modules, released,
    # leave a whole heap for them (wallet ROMFS purse day 54.5 -> 52.5 KB32 with the key
    # tables built, #13)
    s = app.need_perso()
    if not s.get(st.S_PURSES):  # a purse card: after the purse choice (_pay)
        from ..core import ed25519  # noqa: F401

        app.store.reserve()  # then the state's buffer, before the heap is cut up (#13)
    req = decode_map(data)
    chal = check.need_bytes(req, fields.REQ_CHALLENGE, 16)
    amount = check.need_int(req, fields.REQ_AMOUNT)
    payee = check.need_bytes(req, fields.REQ_PAYEE, 8)
    t = check.need_int(req, fields.REQ_TIME)
    kind = check.need_int(req, fields.REQ_KIND, fields.PAYKIND_POS, fields.PAYKIND_TRANSFER)
    pin = req.get(fields.REQ_PIN)
    if pin is not None and not isinstance(pin, bytes):
        raise ApduError(apdu.SW_WRONG_DATA)
    purse = req.get(fields.REQ_PURSE)  # None: the card chooses
    if purse is not None:
        purse = check.need_int(req, fields.REQ_PURSE, 0, fields.MAX_PURSES)
    payee_cert = req.get(fields.REQ_PAYEE_CERT)
    if payee_cert is not None and not isinstance(payee_cert, bytes):
        raise ApduError(apdu.SW_WRONG_DATA)

    last = s.get(st.S_LAST_CHAL)
    if last is not None and last == chal:
        body_bytes = s[st.S_LAST_BODY]
        b = cbor.decode(body_bytes)
        if (
            b[fields.PAY_AMOUNT] == amount
            and b[fields.PAY_PAYEE] == payee
            and b[fields.PAY_KIND] == kind
            and (purse is None or b[fields.PAY_PURSE] == purse)
        ):
            return with_rule(s, app.sign_payment(body_bytes), b)
        raise ApduError(apdu.SW_CONDITIONS)

    if amount == 0:
        raise ApduError(apdu.SW_WRONG_DATA)
    lim = s[st.S_LIMITS]
    if amount > lim[fields.LIM_PAYMENT_MAX]:
        raise ApduError(apdu.SW_OVER_PAYMENT_MAX)

    # A PIN in the request is VERIFY PIN with those digits, here in the order of checks,
    # whatever the amount (PROTOCOL.md §5.1): a wrong one spends a try (63Cx, 6983) and ends
    # the PAY; a right one resets the counter and verifies the session, and stays so even if
    # the PAY is then refused for another reason (one more write: the reset). On success the
    # reset rides in the payment's own commit.
    base = s
    if pin is not None:
        from . import pin as pin_mod  # a PIN in the request only

        base = pin_mod.check(app, pin)  # committed the decrement; base has it reset
    elif amount > lim[fields.LIM_NO_CVM] and not app.pin_ok:
        raise ApduError(apdu.SW_PIN_BLOCKED if s[st.S_PIN_TRIES] == 0 else apdu.SW_SECURITY)
    if base is s:
        return _pay(app, s, chal, amount, payee, t, kind, purse, payee_cert)
    try:
        return _pay(app, base, chal, amount, payee, t, kind, purse, payee_cert)
    except ApduError:
        app.commit(base)  # refused later: the PIN was right, its counter is reset
        raise


def _pay(app, s, chal, amount, payee, t, kind, want, payee_cert):
    lim = s[st.S_LIMITS]
    n = s[st.S_COUNTER]
    if n - s[st.S_SYNC_COUNTER] >= lim[fields.LIM_OFFLINE_COUNT]:
        raise ApduError(apdu.SW_OFFLINE_COUNT)
    spent = s[st.S_SPENT]
    if spent - s[st.S_SYNC_SPENT] + amount > lim[fields.LIM_OFFLINE_AMOUNT]:
        raise ApduError(apdu.SW_OFFLINE_AMOUNT)
    number, p, earmarked, payees = 0, None, 0, None
    if want or (want is None and s.get(st.S_PURSES)):
        mark = app.modules()
        from . import purse_pay  # only on a card with earmarked purses (heap)

        number, p, earmarked, payees = purse_pay.choose(
            app, s, amount, payee, t, kind, want, payee_cert
        )
        purse_pay = None
        app.release_since(mark)  # the choice's modules: the commit and signature have their heap
    if s.get(st.S_PURSES):  # a purse card's signer and state buffer: after the choice (#13)
        from ..core import ed25519  # noqa: F401

        app.store.reserve()
    main = amount - earmarked
    bal = s[st.S_BALANCE]
    pending = s[st.S_PENDING]
    used = s[st.S_STAGED_USED]
    staged = 0
    if main > bal:
        staged = main - bal
        room = lim[fields.LIM_STAGED_SPEND] - used
        if staged > pending or staged > room:
            raise ApduError(apdu.SW_FUNDS)
    new = dict(s)
    app.owe(new, None)  # journal room (6A84): the last check
    if payees is not None:
        new[st.S_PAYEES] = payees

    bal_after = bal - (main - staged)
    body = {
        fields.PAY_WALLET: s[st.S_ID],
        fields.PAY_COUNTER: n + 1,
        fields.PAY_AMOUNT: amount,
        fields.PAY_PAYEE: payee,
        fields.PAY_CHALLENGE: chal,
        fields.PAY_PREV: s[st.S_PREV],
        fields.PAY_PURSE: number,
        fields.PAY_TIME: t,
        fields.PAY_BALANCE: bal_after,
        fields.PAY_KIND: kind,
    }
    if earmarked:
        left = p[st.P_BALANCE] - earmarked
        body[fields.PAY_PROGRAM] = p[st.P_PROGRAM]
        body[fields.PAY_EARMARKED] = earmarked
        body[fields.PAY_PURSE_BALANCE] = left
        purses = list(s[st.S_PURSES])
        purses[number - 1] = [p[st.P_PROGRAM], left, p[st.P_RULE]]
        new[st.S_PURSES] = purses
    body_bytes = cbor.encode(body)
    new[st.S_COUNTER] = n + 1
    new[st.S_BALANCE] = bal_after
    new[st.S_PENDING] = pending - staged
    new[st.S_STAGED_USED] = used + staged
    new[st.S_SPENT] = spent + amount
    new[st.S_PREV] = sha256(body_bytes).digest()
    new[st.S_LAST_CHAL] = chal
    new[st.S_LAST_BODY] = body_bytes
    app.commit(new)  # the decision point: from here on the payment exists

    try:
        env = app.sign_payment(body_bytes)
    except MemoryError:  # committed: 6F00 (the POS keeps its torn entry), never 6F01 (§4.1)
        raise _SIGN_FAILED from None
    answer = with_rule(new, env, body) if earmarked else env
    app.done = apdu.response(answer)  # signed: 9000 with it, whatever fails below (§3.1)
    app.catch_up(False, app.payment_record(env))
    lines = ["Paid " + money(amount)]
    if earmarked:
        lines.append("Purse " + str(number) + " " + money(earmarked))
        lines.append("Purse left " + money(left))
    lines.append("Balance " + money(bal_after))
    lines.append("Offline left " + str(app.offline_left()))
    app.show(lines)
    return answer


def with_rule(s, env, body):
    """What PAY answers: the payment envelope; for a payment with an earmarked part, the array
    [body, sig, rule envelope] (the POS checks the rule; the journal keeps the envelope)."""
    prog = body.get(fields.PAY_PROGRAM)
    if prog is None:
        return env
    for p in s.get(st.S_PURSES) or ():
        if p[st.P_PROGRAM] == prog:
            return b"\x83" + env[1:] + cbor.encode(p[st.P_RULE])
    return env  # the purse was cleared since: the POS will not take it
