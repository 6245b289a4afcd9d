"""The virtual NFC field: ISO 14443 air-time arithmetic, tears, power cuts, transcripts."""

import pytest

from tapcash.firmware.core.hal import LinkError
from tapcash.sim.device.build import DeviceSpec, LocalDevice, spec_seed
from tapcash.sim.device.hal import SimClock
from tapcash.sim.nfc.field import BIT_US_106, AirModel, ComputeModel, Field
from tapcash.sim.run.runner import ScenarioRun
from tapcash.sim.scenario import parse_scenario


class Echo:
    """A card that answers every command with its bytes reversed + 9000."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.powered = 0

    def power_on(self) -> None:
        self.powered += 1

    def process(self, apdu: bytes) -> bytes:
        self.seen.append(apdu)
        return apdu[::-1] + b"\x90\x00"


def test_bit_time_and_frames():
    air = AirModel()
    assert air.bit_us == pytest.approx(128 / 13.56, rel=1e-9)
    assert BIT_US_106 == pytest.approx(9.4395, abs=1e-4)
    # a 10-byte frame: SOF + 90 bits + EOF
    assert air.frame_us(10) == pytest.approx(92 * BIT_US_106)
    # one I-block: PCB + INF + CRC_A, then one frame delay time
    t, frames = air.message_us(20, 256)
    assert frames == 1
    assert t == pytest.approx(air.frame_us(23) + air.fdt_us)


def test_chaining_adds_blocks_and_acks():
    air = AirModel(fsc=64)
    inf = 64 - 3
    t1, f1 = air.message_us(inf, 64)
    t2, f2 = air.message_us(inf + 1, 64)  # one byte more: a second block and an R(ACK)
    assert (f1, f2) == (1, 3)
    # one more data byte and a second PCB + CRC, the second block's and the R(ACK)'s delay,
    # and the R(ACK) frame itself
    extra = 9 * 4 * air.bit_us + 2 * air.fdt_us + air.frame_us(3)
    assert t2 - t1 == pytest.approx(extra)
    assert air.blocks(0, 64) == 1


def test_higher_bit_rate_is_faster():
    slow, fast = AirModel(), AirModel(bit_us=BIT_US_106 / 4)
    assert fast.exchange_us(200, 300)[0] < slow.exchange_us(200, 300)[0] / 3


def test_activation_includes_power_up():
    air = AirModel()
    frames = AirModel(power_up_us=0).activation_us()
    assert 2500 < frames < 4500  # 32 bytes of frames, nine frame delays
    assert air.activation_us() == pytest.approx(5000 + frames)


def test_tap_record_sums_air_card_and_reader_time():
    comp = ComputeModel(card_ms={0x50: 10.0}, reader_ms={0x50: 4.0}, other_card_ms=1.0)
    f = Field(compute=comp, keep=True)
    card = Echo()
    rec = f.tap(card)
    f.transceive(b"\x80\x50\x00\x00\x01\xaa")
    f.transceive(b"\x80\x52\x00\x00")
    f.remove()
    assert rec.exchanges == 2 and rec.frames == 4
    assert rec.card_us == pytest.approx(11000.0)
    assert rec.reader_us == pytest.approx(4000.0)  # after PAY, before RECEIPT
    air = AirModel()
    expected_air = air.exchange_us(6, 8)[0] + air.exchange_us(4, 6)[0]
    assert rec.air_us == pytest.approx(expected_air)
    assert rec.in_field_us == pytest.approx(
        air.activation_us() + expected_air + 11000.0 + 4000.0
    )
    assert f.transcript == [
        (b"\x80\x50\x00\x00\x01\xaa", b"\xaa\x01\x00\x00\x50\x80\x90\x00"),
        (b"\x80\x52\x00\x00", b"\x00\x00\x52\x80\x90\x00"),
    ]
    assert card.powered == 1


def test_command_tear_never_reaches_the_card():
    f = Field()
    card = Echo()
    f.tap(card)
    f.tear("command", 0, 3)
    with pytest.raises(LinkError):
        f.transceive(b"\x00\xa4\x04\x00\x00")
    assert card.seen == []
    with pytest.raises(LinkError):  # out of the field until the next tap
        f.transceive(b"\x00\xa4\x04\x00\x00")
    assert f.current is not None and f.current.torn == "command"


def test_response_tear_after_the_card_processed():
    f = Field()
    card = Echo()
    f.tap(card)
    f.transceive(b"\x01\x02\x03\x04")
    f.tear("response", 1, 2)
    with pytest.raises(LinkError):
        f.transceive(b"\x05\x06\x07\x08")
    assert card.seen[-1] == b"\x05\x06\x07\x08"
    f.tap(card)  # a new tap: commands count from 0 again, no tear pending
    assert f.transceive(b"\x09\x0a\x0b\x0c").endswith(b"\x90\x00")


def test_same_exchanges_same_digest():
    a, b = Field(), Field()
    for f in (a, b):
        f.tap(Echo())
        f.transceive(b"\x80\xca\x00\x00")
    assert a.digest == b.digest
    b.transceive(b"\x80\xca\x00\x00")
    assert a.digest != b.digest


def test_wallet_power_cut_during_pay_is_a_tear_and_recovers(tmp_path):
    sc = parse_scenario({"wallets": {"count": 1}, "pos": {"count": 1},
                         "payments": {"count": 0}, "scenario": {"flash": "memory"}})
    run = ScenarioRun(sc, tmp_path, ledger=False)
    try:
        run.provision()
        pos, wallet = run.devices["pos-1"], run.devices["wallet-1"]
        fld = pos.field
        assert isinstance(fld, Field)
        wallet.cut_after(1, 1000)  # PAY's state commit: every byte lands, then power is gone
        fld.tap(wallet)
        r = pos.take_payment(700)
        rec = fld.remove()
        assert r.status == "torn" and rec is not None and rec.torn == "response"
        fld.tap(wallet)  # field power restores the card: the POS completes the payment
        r2 = pos.take_payment(700)
        fld.remove()
        assert r2.approved and r2.recovered and r2.counter == 1
    finally:
        run.close()


def test_local_device_clock_only_for_terminals(tmp_path):
    clock = SimClock(1000)
    w = LocalDevice(DeviceSpec("wallet", 1, spec_seed(1, "wallet", 1)), clock)
    p = LocalDevice(DeviceSpec("pos", 1, spec_seed(1, "pos", 1), str(tmp_path / "p")), clock)
    assert w.hal.clock is None and p.hal.clock is clock
    assert (tmp_path / "p").is_dir()
