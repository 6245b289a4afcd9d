# PERSO KEYGEN (80 E0 00 00): generate the device key on the card from hal.rng and return
# its public key. The seed never leaves the card. Asked again before PERSO FINISH, it
# returns the same key (a lost response can be retried); after it: 6985.
from ..core import apdu, ed25519
from ..core.apdu import ApduError
from . import state as st


def handle(app, p1, p2, data):
    if data:
        raise ApduError(apdu.SW_WRONG_LENGTH)
    s = app.state
    phase = s[st.S_PHASE]
    if phase == st.PHASE_KEYED:
        return s[st.S_PUB]
    if phase != st.PHASE_BLANK:
        raise ApduError(apdu.SW_CONDITIONS)
    seed = bytes(app.hal.rng.random(32))
    if len(seed) != 32:
        raise ApduError(apdu.SW_INTERNAL)
    pub = ed25519.public_key(seed)
    app.commit(st.new_wallet(seed, pub))
    return pub
