# The card's loop, owned by the wallet app: for every tap the front end emulates an ISO-DEP
# card and hands each command to app.process (a new session per tap: power_on); between taps
# `idle()` serves the sync tool. firmware/main.py drives it on a board with its PN532.


def run(pn532, app, idle=None, stop=None, rng=None, session_timeout_ms=30000, poll_ms=5):
    """Serve taps on a PN532 in card emulation until `stop()`; the number of taps served."""
    from ..hal.pn532_card import serve_card

    pn532.begin()
    return serve_card(pn532, app, stop=stop, idle=idle, rng=rng,
                      session_timeout_ms=session_timeout_ms, poll_ms=poll_ms)  # fmt: skip
