# PERSO KEYGEN, POS variant (docs/PROTOCOL.md §3.4): the terminal makes its own key (a lost
# answer is retried: the same key again); PERSO FINISH (perso_finish.py) follows.
from ..core import apdu
from . import state as st


def handle(app, p1, p2, data):
    from ..core import ed25519

    if data:
        raise apdu.ApduError(apdu.SW_WRONG_LENGTH)
    phase = app.cf[st.C_PHASE]
    if phase == st.PHASE_KEYED:
        return app.cf[st.C_PUB]  # a lost response is retried: same key
    if phase != st.PHASE_BLANK:
        raise apdu.ApduError(apdu.SW_CONDITIONS)
    seed = bytes(app.hal.rng.random(32))
    if len(seed) != 32:
        raise apdu.ApduError(apdu.SW_INTERNAL)
    pub = ed25519.public_key(seed)
    app.commit_config({st.C_PHASE: st.PHASE_KEYED, st.C_SEED: seed, st.C_PUB: pub})
    return pub
