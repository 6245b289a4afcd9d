# Earmarked purses at PAY (PROTOCOL.md §4.2): which purse pays part of a payment. Imported by
# pay.py only on a card that holds earmarked purses, so a main-purse card keeps its heap, and
# released again once the purse is chosen (pay.py): the commit and the signature that follow
# have its heap (#13). The PAY answer that carries the rule to the POS is pay.py's.
from ..core import apdu, check, fields
from ..core import purse as purse_rule
from ..core.apdu import ApduError
from ..core.cert import verify_cert
from ..core.runtime import sha256
from . import state as st

PAYEES_MAX = 4  # POS certificates remembered as verified (most recent last)


def payee(app, s, payee_cert, payee_id, t):
    """(merchant id, category, new S_PAYEES list or None) of a POS certificate valid at time t
    for payee_id, or None. A certificate verified before is found by the hash of its envelope
    in S_PAYEES (kept with the state, written with the PAY commit: no extra write), so a card
    pays its usual bus or school without an issuer signature check in the field; a first one is
    checked with the issuer key's table (core/comb.py, written at the purse's LOAD) when the
    card has it."""
    h = sha256(payee_cert).digest()[:16]
    known = s.get(st.S_PAYEES) or []
    for e in known:
        if e[0] == h:
            if e[1] != payee_id or e[4] < t:
                return None
            return e[2], e[3], None
    from ..core import comb  # a first tap at this POS only

    try:
        table = comb.opener(app.hal.flash, s[st.S_ISSUERS])
        c = verify_cert(payee_cert, app.issuer_keys(), fields.KIND_POS, t, table)
    except ApduError as e:
        if e.sw == apdu.SW_NO_RAM:  # out of RAM decides nothing: refuse the PAY (6F01)
            raise
        return None
    if c[fields.CERT_ID] != payee_id:
        return None
    merchant = c.get(fields.CERT_MERCHANT)
    category = c.get(fields.CERT_CATEGORY, 0)
    known = list(known[-(PAYEES_MAX - 1) :])
    known.append([h, payee_id, merchant, category, c[fields.CERT_EXPIRES]])
    return merchant, category, known


def choose(app, s, amount, payee_id, t, kind, want, payee_cert):
    """(purse number, its entry, earmarked part, new S_PAYEES or None) of the purse that pays
    part of this payment, or (0, None, 0, ...) for the main purse alone. `want` None: the first
    eligible purse; 0: none; k: purse k, or 6918 when it cannot pay here. Cheap checks first:
    the POS certificate is looked at only when a purse with value is valid at time t."""
    purses = s.get(st.S_PURSES)
    if want == 0 or (want is None and not purses):
        return 0, None, 0, None
    cands = []  # purse numbers: their rules are decoded again after the certificate check,
    rule = None  # which then has their heap (#13)
    for i in range(len(purses or ())):
        if want is None or want == i + 1:
            p = purses[i]
            if not p[st.P_BALANCE] or not t:
                continue  # an empty purse or an unknown time: its rule is not even read
            rule = st.rule_of(p)
            if purse_rule.share(rule, p[st.P_BALANCE], amount):
                if check.opt_int(rule, fields.RULE_FROM, 0) <= t <= rule[fields.RULE_EXPIRES]:
                    cands.append(i + 1)
    rule = p = None
    known = None
    if cands and kind == fields.PAYKIND_POS and payee_cert is not None:
        got = payee(app, s, payee_cert, payee_id, t)
        if got is not None:
            merchant, category, known = got
            for n in cands:
                p = purses[n - 1]
                rule = st.rule_of(p)
                if purse_rule.allows(rule, merchant, category, t):
                    return n, p, purse_rule.share(rule, p[st.P_BALANCE], amount), known
    if want is not None:
        raise ApduError(apdu.SW_PURSE)
    return 0, None, 0, known

