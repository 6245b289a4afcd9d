# Earmarked purses at PAY (PROTOCOL.md §4.2): which purse pays part of a payment, and the
# PAY answer that carries its rule to the POS. Imported by pay.py only on a card that holds
# earmarked purses, so a main-purse card keeps its heap.
from ..core import cbor, proto
from ..core import purse as purse_rule
from ..core.proto import ApduError
from . import state as st


def choose(app, s, amount, payee, t, kind, want, payee_cert):
    """(purse number, its entry, earmarked part) of the purse that pays part of this payment,
    or (0, None, 0) for the main purse alone. `want` None: the first eligible purse; 0: none;
    k: purse k, or 6918 when it cannot pay here. Cheap checks first: the POS certificate (an
    issuer signature) is verified only when a purse with value is valid at time t."""
    purses = s.get(st.S_PURSES)
    if want == 0 or (want is None and not purses):
        return 0, None, 0
    cands = []
    for i in range(len(purses or ())):
        if want is None or want == i + 1:
            p = purses[i]
            rule = st.rule_of(p)
            if p[st.P_BALANCE] and purse_rule.share(rule, p[st.P_BALANCE], amount):
                if t and proto.opt_int(rule, proto.RULE_FROM, 0) <= t <= rule[proto.RULE_EXPIRES]:
                    cands.append((i + 1, p, rule))
    if cands and kind == proto.PAYKIND_POS and payee_cert is not None:
        try:
            c = proto.verify_cert(payee_cert, app.issuer_keys(), proto.KIND_POS, t)
        except ApduError:
            c = None
        if c is not None and c[proto.CERT_ID] == payee:
            merchant = c.get(proto.CERT_MERCHANT)
            category = c.get(proto.CERT_CATEGORY, 0)
            for n, p, rule in cands:
                if purse_rule.allows(rule, merchant, category, t):
                    return n, p, purse_rule.share(rule, p[st.P_BALANCE], amount)
    if want is not None:
        raise ApduError(proto.SW_PURSE)
    return 0, None, 0


def pay_response(s, env, body):
    """What PAY answers: the payment envelope; for a payment with an earmarked part, the array
    [body, sig, rule envelope] (the POS checks the rule; the journal keeps the envelope)."""
    prog = body.get(proto.PAY_PROGRAM)
    if prog is None:
        return env
    for p in s.get(st.S_PURSES) or ():
        if p[st.P_PROGRAM] == prog:
            return b"\x83" + env[1:] + cbor.encode(p[st.P_RULE])
    return env  # the purse was cleared since: the POS will not take it
