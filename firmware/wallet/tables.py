# The issuer keys' tables of a purse card (core/combgen.py, core/comb.py), built by app.process
# once a purse's LOAD is done: a module of its own, so that the build does not import the
# LOAD handler and its helpers again beside the builder (#13).
from ..core.hal import PowerCut
from . import state as st


def build(app):
    """After a purse's LOAD, called by app.process once the LOAD's objects and modules are
    gone: the table of each issuer key that has none whole (core/combgen.py; about 50 ms a key
    in the MicroPython VM, once), so that PAY checks a POS certificate in about half the time
    and with less heap. Built inside the LOAD, before its commit, it ran out of RAM below
    about 58 KB32 (ROMFS), so a card within the purse day's budget never had one (#13). The
    LOAD is decided by then; a cut or a lack of RAM leaves a table or a part of one, which the
    next purse LOAD completes. Not while PyNaCl verifies (CPython): it has no use for one."""
    # board: omit - (a board has no PyNaCl)
    from ..core import ed25519

    if ed25519._use_nacl:
        return
    # board: end
    from ..core import combgen

    try:
        combgen.build(app.hal.flash, app.state[st.S_ISSUERS])
    except PowerCut:
        raise
    except Exception:  # no table: verify decides without one, only slower
        pass
