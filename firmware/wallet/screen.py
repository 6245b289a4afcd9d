# The visual card's purse screens (issue #13): its button (hal.Keys, a single key) pages
# through what the card holds, main purse and earmarked purses, on its own screen.
#
#   press(app)   # firmware/main.py's idle hook calls it for each press of a visual card's button
#
# First press: the overview, every purse with its balance (at most 1 + MAX_PURSES = 4 lines, so
# it fits a 128x32 panel too); each next press: one earmarked purse in detail (kind, the last day
# its rule allows, cap or unit price); then the overview again. A press after a command changed
# the card (a tap) starts at the overview. Lines are at most 16 characters (8x8 font, 128
# columns) for amounts up to 99999.99. Imported on a press only, released after it (main.py):
# no tap carries this module.
from ..core import fields
from ..core.units import DAY_S, money
from . import state as st


def date(t):
    """Unix time `t` as the UTC date "YYYY-MM-DD" (days to civil date, H. Hinnant's method)."""
    z = t // DAY_S + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return str(y) + "-" + ("0" + str(m))[-2:] + "-" + ("0" + str(d))[-2:]


def pages(app, s):
    """The screens of state `s` (of wallet `app`), in button order: the overview, then one
    per earmarked purse."""
    purses = s.get(st.S_PURSES) or ()
    first = ["Balance " + money(s[st.S_BALANCE])]
    out = [first]
    for i in range(len(purses)):
        p = purses[i]
        head = "Purse " + str(i + 1) + " " + money(p[st.P_BALANCE])
        first.append(head)
        r = st.rule_of(p)
        lines = [head, "Prepaid" if r.get(fields.RULE_KIND) == fields.PROG_PREPAID else "Subsidy",
                 "Until " + date(r[fields.RULE_EXPIRES])]  # fmt: skip
        if r.get(fields.RULE_UNIT):
            lines.append("Unit " + money(r[fields.RULE_UNIT]))
        elif r.get(fields.RULE_CAP):
            lines.append("Cap " + money(r[fields.RULE_CAP]))
        out.append(lines)
    if not purses:
        first.append("Offline left " + str(app.offline_left(s)))
    return out


def press(app):
    """Show the next screen of the card (the overview after a command changed the state);
    a card not personalised shows nothing. Returns the lines shown, or None."""
    s = app.state
    if s is None or s.get(st.S_PHASE) != st.PHASE_PERSO:
        return None
    all_pages = pages(app, s)
    at = 0
    last = getattr(app, "screen_at", None)
    if last is not None and last[0] is s:
        at = (last[1] + 1) % len(all_pages)
    app.screen_at = (s, at)
    app.show(all_pages[at])
    return all_pages[at]
