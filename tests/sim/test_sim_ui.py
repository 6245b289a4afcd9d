"""`tapcash sim ui` driven headless through Textual's Pilot: keypad clicks and key presses go to
the unchanged POS firmware, taps put the unchanged wallet firmware in the virtual field, and the
assertions read what the screens, the event log and the devices' own state say.

Waits poll for a state with a generous deadline (the firmware runs in the checkout's terminal
thread); nothing here asserts on time.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from tapcash.firmware.wallet import state as wst
from tapcash.host.cli import cli
from tapcash.sim.ui.apdu_text import command_text, response_text, sw_text
from tapcash.sim.ui.app import CheckoutApp
from tapcash.sim.ui.checkout import CARD, IDLE, PIN
from tapcash.sim.ui.cli import parse_card
from tapcash.sim.ui.widgets import Lcd, PinPrompt, screen_rows

SIZE = (130, 42)
WAIT_S = 30.0

Pilot = object  # textual.pilot.Pilot; typed loosely to keep the helpers short


Scenario = Callable[[CheckoutApp, Pilot], Awaitable[None]]


def run_ui(scenario: Scenario, **kwargs: object) -> CheckoutApp:
    """Run `scenario(app, pilot)` against a fresh app; returns the app (closed) for checks."""
    kwargs.setdefault("ledger", False)
    app = CheckoutApp(key_timeouts=False, **kwargs)  # type: ignore[arg-type]

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.status is not None and app.status.phase == IDLE)
            await scenario(app, pilot)

    asyncio.run(main())
    assert app.failed is None, app.failed
    assert not app.checkout.running
    return app


async def until(pilot: Pilot, cond: Callable[[], object], what: str = "") -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what or cond}")
        await pilot.pause(0.01)  # type: ignore[attr-defined]


async def click(pilot: Pilot, selector: str) -> None:
    assert await pilot.click(selector), f"the click missed {selector}"  # type: ignore[attr-defined]


async def keypad(pilot: Pilot, keys: str) -> None:
    ids = {"#": "hash", "*": "star"}
    for k in keys:
        await click(pilot, f"#key-{ids.get(k, k)}")


def pos_lines(app: CheckoutApp) -> tuple[str, ...]:
    return app.query_one("#pos-lcd", Lcd).lines


def card_lines(app: CheckoutApp, i: int) -> tuple[str, ...]:
    return app.query_one(f"#card-lcd-{i}", Lcd).lines


def phase(app: CheckoutApp) -> str:
    return app.status.phase if app.status is not None else ""


def balance(app: CheckoutApp, i: int) -> int:
    return int(app.checkout.cards[i].state[wst.S_BALANCE])


def counter(app: CheckoutApp, i: int) -> int:
    return int(app.checkout.cards[i].state[wst.S_COUNTER])


def log_has(app: CheckoutApp, text: str) -> bool:
    return any(text in line for line in app.log_text)


# ---- a payment, by hand -------------------------------------------------------------------------
def test_keypad_amount_and_tap_pay_and_show_the_new_balance() -> None:
    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        assert pos_lines(app) == ("Ready", "Enter amount")
        assert card_lines(app, 0) == ("Loaded 150.00", "Balance 150.00", "Offline left 10")
        await keypad(pilot, "1250")
        await until(pilot, lambda: pos_lines(app) == ("Amount", "12.50"))
        await keypad(pilot, "#")
        await until(pilot, lambda: phase(app) == CARD)
        assert pos_lines(app) == ("Pay 12.50", "Tap card", "* cancel")
        await click(pilot, "#tap-0")
        await until(pilot, lambda: len(app.payments) == 1 and phase(app) == IDLE)

        done = app.payments[0]
        assert (done.status, done.amount, done.balance, done.counter) == ("approved", 1250,
                                                                          13750, 1)
        assert pos_lines(app) == ("Approved", "12.50", "Balance 137.50")
        assert card_lines(app, 0) == ("Paid 12.50", "Balance 137.50", "Offline left 9")
        assert "Balance 137.50" in app.query_one("#card-lcd-0", Lcd).text
        assert balance(app, 0) == 13750 and counter(app, 0) == 1
        assert app.status is not None and app.status.journal == 1
        assert app.status.cards[0].offline_left == 9 and not app.status.cards[0].in_field
        assert log_has(app, "→ SELECT") and log_has(app, "→ PAY") and log_has(app, "→ RECEIPT")
        assert log_has(app, "← 9000 OK")
        assert log_has(app, "APPROVED 12.50 card A (Ana): counter 1, POS journal seq 1, "
                            "card balance 137.50")
        assert log_has(app, "card A left the field: 3 exchanges")
        # the other cards were never touched
        assert balance(app, 1) == 8000 and counter(app, 1) == 0

    run_ui(scenario)


def test_keyboard_enter_backspace_and_tap_key() -> None:
    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        await pilot.press("9", "9", "backspace")  # type: ignore[attr-defined]
        await until(pilot, lambda: pos_lines(app) == ("Amount", "0.00"))
        await pilot.press("4", "0", "0", "enter")  # type: ignore[attr-defined]
        await until(pilot, lambda: phase(app) == CARD)
        await pilot.press("b")  # type: ignore[attr-defined]
        await until(pilot, lambda: len(app.payments) == 1 and phase(app) == IDLE)
        assert app.payments[0].status == "approved"
        assert balance(app, 1) == 8000 - 400
        assert card_lines(app, 1) == ("Paid 4.00", "Balance 76.00", "Offline left 9")

    run_ui(scenario)


def test_card_tapped_during_amount_entry_pays_as_soon_as_the_amount_is_confirmed() -> None:
    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        await pilot.press("3", "0")  # type: ignore[attr-defined]
        await click(pilot, "#tap-0")
        await until(pilot, lambda: app.status is not None and app.status.cards[0].in_field)
        assert app.query_one("#card-0").has_class("in-field")
        await pilot.press("enter")  # type: ignore[attr-defined]
        await until(pilot, lambda: len(app.payments) == 1 and phase(app) == IDLE)
        assert app.payments[0].status == "approved" and balance(app, 0) == 15000 - 30

    run_ui(scenario)


def test_decline_above_the_balance_shows_the_reason_and_changes_nothing() -> None:
    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        await pilot.press("3", "0", "0", "0", "enter")  # 30.00 > Caro's 25.00
        await until(pilot, lambda: phase(app) == CARD)
        await click(pilot, "#tap-2")
        await until(pilot, lambda: len(app.payments) == 1 and phase(app) == IDLE)

        assert (app.payments[0].status, app.payments[0].reason) == ("declined", "funds")
        assert pos_lines(app) == ("Declined", "Not enough funds")
        # the board's 128x64 SSD1306 has 16 columns: the screen shows what fits
        assert app.query_one("#pos-lcd", Lcd).text.splitlines()[2] == "Not enough funds"
        assert log_has(app, "DECLINED 30.00 card C (Caro): insufficient funds [funds], "
                            "status 6910 insufficient funds")
        assert log_has(app, "← 6910 insufficient funds")
        assert balance(app, 2) == 2500 and counter(app, 2) == 0
        assert card_lines(app, 2) == ("Loaded 25.00", "Balance 25.00", "Offline left 10")
        assert app.status is not None and app.status.journal == 0

    run_ui(scenario)


def test_amount_over_the_floor_limit_is_declined_before_any_tap() -> None:
    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        await pilot.press(*"25000", "enter")  # 250.00 > the POS floor limit 200.00
        await until(pilot, lambda: pos_lines(app) == ("Declined", "floor_limit"))
        assert log_has(app, "DECLINED 250.00 before any tap: over the POS floor limit")
        assert phase(app) == IDLE and not app.payments

    run_ui(scenario)


def test_cancel_while_waiting_for_a_card() -> None:
    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        await pilot.press("5", "enter")  # type: ignore[attr-defined]
        await until(pilot, lambda: phase(app) == CARD)
        await pilot.press("escape")  # type: ignore[attr-defined]
        await until(pilot, lambda: pos_lines(app) == ("Cancelled",))
        assert log_has(app, "sale of 0.05 cancelled") and not app.payments

    run_ui(scenario)


# ---- PIN above the no-CVM limit -----------------------------------------------------------------
def test_pin_prompt_above_the_no_cvm_limit_wrong_then_right() -> None:
    # issue #14: a wrong PIN asks again (the card stays in the field) instead of ending the sale
    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        await keypad(pilot, "7500#")  # 75.00 > the card's no-CVM limit 50.00
        await until(pilot, lambda: phase(app) == CARD)
        await pilot.press("b")  # type: ignore[attr-defined]
        await until(pilot, lambda: isinstance(app.screen, PinPrompt), "PIN prompt")
        assert phase(app) == PIN and pos_lines(app) == ("PIN", "")
        await pilot.press(*"9999", "enter")  # type: ignore[attr-defined]
        await until(pilot, lambda: len(app.payments) == 1)
        assert (app.payments[0].status, app.payments[0].reason) == ("declined", "pin_wrong")
        assert log_has(app, "wrong PIN [pin_wrong]")
        assert log_has(app, "wrong PIN, 2 tries left: enter it again")
        assert balance(app, 1) == 8000
        # asked again, same sale, same card: no new amount, no new tap
        await until(pilot, lambda: isinstance(app.screen, PinPrompt), "PIN prompt again")
        assert phase(app) == PIN
        await pilot.press(*"1234", "enter")  # type: ignore[attr-defined]
        await until(pilot, lambda: len(app.payments) == 2 and phase(app) == IDLE)
        assert app.payments[1].status == "approved" and app.payments[1].amount == 7500
        assert pos_lines(app) == ("Approved", "75.00", "Balance 5.00")
        assert card_lines(app, 1) == ("Paid 75.00", "Balance 5.00", "Offline left 9")
        assert balance(app, 1) == 500

    run_ui(scenario)


def test_pin_prompt_cancelled_declines() -> None:
    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        await pilot.press(*"6000", "enter")  # type: ignore[attr-defined]
        await until(pilot, lambda: phase(app) == CARD)
        await pilot.press("a")  # type: ignore[attr-defined]
        await until(pilot, lambda: isinstance(app.screen, PinPrompt), "PIN prompt")
        await pilot.press("escape")  # type: ignore[attr-defined]
        await until(pilot, lambda: len(app.payments) == 1 and phase(app) == IDLE)
        assert (app.payments[0].status, app.payments[0].reason) == ("declined", "pin_required")
        assert balance(app, 0) == 15000

    run_ui(scenario)


# ---- torn taps ----------------------------------------------------------------------------------
def test_torn_pay_response_then_retap_completes_once() -> None:
    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        app.action_tear(("response", 1, 10))  # the card signs, its answer breaks at byte 10
        await until(pilot, lambda: app.status is not None and app.status.tear_armed)
        label = str(app.query_one("#tear").label)  # type: ignore[attr-defined]
        assert "ARMED (after commit)" in label
        await pilot.press(*"2000", "enter")  # type: ignore[attr-defined]
        await until(pilot, lambda: phase(app) == CARD)
        await click(pilot, "#tap-0")
        await until(pilot, lambda: len(app.payments) == 1 and phase(app) == CARD)

        assert app.payments[0].status == "torn"
        assert pos_lines(app) == ("Interrupted", "Tap again")
        assert card_lines(app, 0)[0] == "Paid 20.00"  # the card committed before the tear
        assert balance(app, 0) == 13000 and counter(app, 0) == 1
        assert app.status is not None and app.status.torn == 1 and app.status.journal == 0
        assert log_has(app, "✗ link torn in the response of command 1")
        assert log_has(app, "TORN 20.00 card A (Ana)")

        await click(pilot, "#tap-0")
        await until(pilot, lambda: len(app.payments) == 2 and phase(app) == IDLE)
        done = app.payments[1]
        assert (done.status, done.reason, done.recovered) == ("approved", "recovered", True)
        assert pos_lines(app) == ("Approved", "20.00", "(earlier tap)", "Balance 130.00")
        assert balance(app, 0) == 13000 and counter(app, 0) == 1  # debited exactly once
        assert app.status.journal == 1 and app.status.torn == 0
        assert log_has(app, "recovered: the card had signed it on the torn tap")

    run_ui(scenario)


def test_the_cashier_chooses_where_the_tear_lands() -> None:
    # issue #14: the Tear button (key t) cycles off -> random -> before the card commits ->
    # after it commits -> off, so "card committed, POS re-sends" is reachable by hand
    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        modes = []
        for _ in range(4):
            before = app.status.tear_mode if app.status else "off"
            await pilot.press("t")  # type: ignore[attr-defined]
            await until(pilot, lambda b=before: app.status is not None
                        and app.status.tear_mode != b)
            modes.append(app.status.tear_mode)  # type: ignore[union-attr]
        assert modes == ["random", "before commit", "after commit", "off"]
        await pilot.press("t", "t")  # type: ignore[attr-defined]
        await until(pilot, lambda: app.status is not None
                    and app.status.tear_mode == "before commit")
        assert "ARMED (before commit)" in str(app.query_one("#tear").label)  # type: ignore
        await pilot.press(*"2000", "enter")  # type: ignore[attr-defined]
        await until(pilot, lambda: phase(app) == CARD)
        await click(pilot, "#tap-0")
        await until(pilot, lambda: len(app.payments) == 1 and phase(app) == CARD)
        assert app.payments[0].status == "torn"
        assert balance(app, 0) == 15000 and counter(app, 0) == 0  # the card never committed
        await click(pilot, "#tap-0")
        await until(pilot, lambda: len(app.payments) == 2 and phase(app) == IDLE)
        done = app.payments[1]
        assert (done.status, done.recovered) == ("approved", False)  # a fresh payment
        assert balance(app, 0) == 13000 and counter(app, 0) == 1

        # after the card commits: the re-tap recovers the signed payment
        await pilot.press("t", "t", "t")  # type: ignore[attr-defined]
        await until(pilot, lambda: app.status is not None
                    and app.status.tear_mode == "after commit")
        await pilot.press(*"1000", "enter")  # type: ignore[attr-defined]
        await until(pilot, lambda: phase(app) == CARD)
        await click(pilot, "#tap-0")
        await until(pilot, lambda: len(app.payments) == 3 and phase(app) == CARD)
        assert app.payments[2].status == "torn"
        assert balance(app, 0) == 12000 and counter(app, 0) == 2  # committed before the tear
        await click(pilot, "#tap-0")
        await until(pilot, lambda: len(app.payments) == 4 and phase(app) == IDLE)
        assert (app.payments[3].status, app.payments[3].recovered) == ("approved", True)
        assert balance(app, 0) == 12000 and counter(app, 0) == 2  # debited once

    run_ui(scenario)


@pytest.mark.parametrize("seed", range(6))
def test_tear_button_then_retaps_debit_exactly_once(seed: int) -> None:
    """The Tear button breaks the next tap at a random byte (seeded: these seeds tear the
    SELECT answer, the PAY command, the RECEIPT answer and command, the PAY answer - the card
    has signed, the re-tap recovers - and the PAY command again); re-tapping until the sale
    ends leaves the card debited once and the POS with one journal record."""

    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        await click(pilot, "#tear")
        await until(pilot, lambda: app.status is not None and app.status.tear_armed)
        await pilot.press(*"1500", "enter")  # type: ignore[attr-defined]
        await until(pilot, lambda: phase(app) == CARD)
        taps = 0
        while phase(app) != IDLE:
            taps += 1
            assert taps <= 3
            await click(pilot, "#tap-1")
            await until(pilot, lambda t=taps: len(app.payments) == t and phase(app) != "paying")
        assert log_has(app, "tear armed for this tap")
        assert app.payments[-1].status == "approved"
        assert balance(app, 1) == 8000 - 1500 and counter(app, 1) == 1
        assert app.status is not None and app.status.journal == 1

    run_ui(scenario, seed=seed)


# ---- card to card ------------------------------------------------------------------------------
def test_a_transfer_between_two_cards_is_staged_and_shown() -> None:
    # issue #14: the simulator by hand had no transfer between cards
    from tapcash.sim.ui.widgets import TransferPrompt

    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        await click(pilot, "#transfer")
        await until(pilot, lambda: isinstance(app.screen, TransferPrompt), "transfer prompt")
        await pilot.press("a", "enter", "b", "enter", *"5.00", "enter")  # type: ignore
        await until(pilot, lambda: log_has(app, "TRANSFER 5.00 card A"), "transfer done")
        assert log_has(app, "pending on card B until it syncs")
        assert balance(app, 0) == 15000 - 500 and counter(app, 0) == 1
        assert app.checkout.cards[1].state[wst.S_PENDING] == 500  # staged, not spendable yet
        assert balance(app, 1) == 8000
        await until(pilot, lambda: card_lines(app, 1)[0] == "Received 5.00", "B's screen")
        assert card_lines(app, 1) == ("Received 5.00", "Pending 5.00", "Balance 80.00")
        assert card_lines(app, 0)[0] == "Paid 5.00"

        # above the payer's no-CVM limit without its PIN: refused, nothing moves
        await pilot.press("x")  # type: ignore[attr-defined]
        await until(pilot, lambda: isinstance(app.screen, TransferPrompt), "transfer prompt")
        await pilot.press("a", "enter", "b", "enter", *"60.00", "enter")  # type: ignore
        await until(pilot, lambda: log_has(app, "TRANSFER 60.00 card A"), "refusal logged")
        assert log_has(app, "refused")
        assert balance(app, 0) == 14500 and app.checkout.cards[1].state[wst.S_PENDING] == 500

    run_ui(scenario)


# ---- sync with the ledger -----------------------------------------------------------------------
def test_sync_uploads_the_journal_and_resets_offline_counts() -> None:
    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        assert app.status is not None and app.status.ledger == "ready"
        assert app.ready is not None and app.ready.ledger_url.startswith("http://127.0.0.1:")
        await pilot.press(*"1000", "enter")  # type: ignore[attr-defined]
        await until(pilot, lambda: phase(app) == CARD)
        await pilot.press("a")  # type: ignore[attr-defined]
        await until(pilot, lambda: len(app.payments) == 1 and phase(app) == IDLE)
        assert app.status.journal == 1 and app.status.cards[0].offline_left == 9

        await click(pilot, "#sync")
        await until(pilot, lambda: log_has(app, "sync card C:"), "sync of every device")
        await until(pilot, lambda: phase(app) == IDLE)
        assert log_has(app, "sync pos-1: synced, 1 records uploaded, 1 accepted")
        assert app.status.journal == 0
        assert app.status.cards[0].offline_left == 10
        assert balance(app, 0) == 14000
        # the card's own screen agrees with its status after the sync (issue #14)
        await until(pilot, lambda: card_lines(app, 0)[0] == "Synced", "card screen after sync")
        assert card_lines(app, 0) == ("Synced", "Balance 140.00", "Offline left 10")

    run_ui(scenario, ledger=True)


# ---- how it looks -------------------------------------------------------------------------------
def test_screenshot_shows_the_checkout(tmp_path: Path) -> None:
    shot: list[str] = []

    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        await pilot.press(*"1250", "enter")  # type: ignore[attr-defined]
        await until(pilot, lambda: phase(app) == CARD)
        await pilot.press("a")  # type: ignore[attr-defined]
        await until(pilot, lambda: len(app.payments) == 1 and phase(app) == IDLE)
        await pilot.pause(0.05)  # type: ignore[attr-defined]
        shot.append(app.save_screenshot(path=str(tmp_path), filename="checkout.svg"))

    run_ui(scenario)
    svg = Path(shot[0]).read_text()
    assert svg.startswith("<svg")
    text = html.unescape(svg).replace("\xa0", " ")
    for expected in ("POS terminal", "Approved", "Balance 137.50", "Card A · Ana",
                     "Card C · Caro", "Paid 12.50", "Offline left 9", "Tear next tap",
                     "Sync with ledger", "APPROVED 12.50 card A", "→ PAY", "journal: 1 to sync"):
        assert expected in text, expected


# ---- pieces -------------------------------------------------------------------------------------
def test_screen_rows_follow_the_ssd1306_driver() -> None:
    rows = screen_rows(["Approved", "12.50", "Balance 137.50"])
    assert len(rows) == 8 and all(len(r) == 16 for r in rows)
    assert [r.rstrip() for r in rows[:6]] == ["Approved", "", "12.50", "", "Balance 137.50", ""]
    rows = screen_rows([str(i) * 20 for i in range(10)])  # more than half: single spacing, cut
    assert [r for r in rows] == [str(i) * 16 for i in range(8)]


def test_apdu_text() -> None:
    assert sw_text(0x9000) == "9000 OK"
    assert sw_text(0x63C2) == "63C2 wrong PIN, 2 tries left"
    assert sw_text(0x6910) == "6910 insufficient funds"
    assert command_text(bytes.fromhex("80500000026162")) == "PAY (7 B) 80500000026162"
    assert response_text(bytes(20) + b"\x90\x00") == "9000 OK (22 B) " + "00" * 12 + "…"
    assert response_text(b"\x69\x10") == "6910 insufficient funds (2 B)"


def test_parse_card_and_cli_help() -> None:
    assert parse_card("Ana=150.00", 0) == ("A", "Ana", 15000)
    assert parse_card(" Bo = 0.5 ", 1) == ("B", "Bo", 50)
    for bad in ("Ana", "=5", "Ana=x", "Ana=1.234", "Ana=-1"):
        with pytest.raises(Exception, match="Ana|NAME|amount"):
            parse_card(bad, 0)
    res = CliRunner().invoke(cli, ["sim", "ui", "--help"])
    assert res.exit_code == 0 and "--no-ledger" in res.output and "NAME=AMOUNT" in res.output


def test_a_card_with_a_purse_shows_it_and_which_purse_paid() -> None:
    # Dan's card holds a 30.00 purse prepaid at this POS's merchant (a programme on the real
    # ledger): a 40.00 sale takes 30.00 from the purse and 10.00 from the main purse.
    from tapcash.sim.ui.checkout import CardSpec
    from tapcash.sim.ui.cli import _spec

    spec = _spec(CardSpec, "Dan=50.00+30.00", 0)
    assert (spec.holder, spec.balance, spec.purse) == ("Dan", 5000, 3000)

    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        assert app.status.cards[0].purses == ((1, 3000),)
        assert "purse 1 30.00" in str(app.query_one("#card-0").facts.render())
        await keypad(pilot, "4000#")
        await until(pilot, lambda: phase(app) == CARD)
        await click(pilot, "#tap-0")
        await until(pilot, lambda: len(app.payments) == 1 and phase(app) == IDLE)
        done = app.payments[0]
        assert (done.status, done.purse, done.earmarked, done.balance) == ("approved", 1, 3000,
                                                                           4000)
        assert app.status.cards[0].purses == ((1, 0),)
        assert log_has(app, "purse 1 paid 30.00 (left 0.00), the main purse 10.00")
        assert "Purse 1 30.00" in card_lines(app, 0)
        assert pos_lines(app) == ("Approved", "40.00", "Purse 30.00", "Balance 40.00")

    run_ui(scenario, cards=(spec,), ledger=True)


def test_a_visual_cards_button_pages_through_its_purses_on_its_screen() -> None:
    # #13: the card's own button shows every purse with its balance, then each purse in detail
    # (firmware/main.py wallet_idle and wallet/screen.py, unchanged); a card in the POS's field
    # does not read its button (a board polls it only while no reader is there).
    from tapcash.firmware.core import fields
    from tapcash.firmware.wallet import state as st
    from tapcash.firmware.wallet.screen import date
    from tapcash.sim.ui.checkout import CardSpec
    from tapcash.sim.ui.cli import _spec

    dan = _spec(CardSpec, "Dan=50.00+30.00", 0)
    eve = _spec(CardSpec, "Eve=20.00", 1)

    async def scenario(app: CheckoutApp, pilot: Pilot) -> None:
        card = app.checkout.cards[0]
        until_day = date(st.rule_of(card.state[st.S_PURSES][0])[fields.RULE_EXPIRES])
        await click(pilot, "#press-0")
        overview = ("Balance 50.00", "Purse 1 30.00")
        await until(pilot, lambda: card_lines(app, 0) == overview, "the overview")
        await click(pilot, "#press-0")
        detail = ("Purse 1 30.00", "Prepaid", "Until " + until_day)
        await until(pilot, lambda: card_lines(app, 0) == detail, "the purse's screen")
        await click(pilot, "#press-0")
        await until(pilot, lambda: card_lines(app, 0) == overview, "round again")
        await click(pilot, "#press-1")  # no earmarked purse
        await until(pilot, lambda: card_lines(app, 1) == ("Balance 20.00", "Offline left 10"))
        await keypad(pilot, "4000#")
        await until(pilot, lambda: phase(app) == CARD)
        await click(pilot, "#tap-0")
        await until(pilot, lambda: len(app.payments) == 1 and phase(app) == IDLE)
        await click(pilot, "#press-0")  # after the payment: the overview, as it is now
        await until(pilot, lambda: card_lines(app, 0) == ("Balance 40.00", "Purse 1 0.00"))
        await click(pilot, "#tap-0")
        await until(pilot, lambda: app.checkout.in_field == 0)
        await click(pilot, "#press-0")
        await until(pilot, lambda: log_has(app, "in the POS's field: its button waits"))
        assert card_lines(app, 0) == ("Balance 40.00", "Purse 1 0.00")

    run_ui(scenario, cards=(dan, eve), ledger=True)
