"""A PN532 NFC controller emulated at the frame level, on a virtual RF field.

The emulator speaks the bytes a real PN532 (firmware v1.6, NXP UM0701-02) exchanges with its host,
so the unchanged firmware driver (``firmware/hal/pn532.py`` + ``pn532_transport.py``) runs against
it on CPython through bus adapters with the method shapes of MicroPython's ``machine`` classes:

    field = RfField()
    chip = PN532Emulator(field)                      # one chip; pick one bus for it:
    i2c = SimI2C(chip)                               # machine.I2C: writeto / readfrom_into
    spi = SimSPI(chip)                               # machine.SPI + spi.cs (a Pin)
    uart = SimUART(chip)                             # machine.UART: write / read / readinto / any
    field.place(SimCard(wallet_app))                 # a card (anything with process(apdu))

Reader mode: the driver lists the card (InListPassiveTarget) and exchanges APDUs with it
(InDataExchange); ``field.remove()`` takes it away, also mid-exchange. Target mode: the driver
makes the chip a card (TgInitAsTarget) and a reader in the field sends APDUs: ``SimReaderLink``
(a ``hal.Link``), or a second PN532Emulator in reader mode on the same field.

Nothing here is shared with the firmware: frames are built and checked independently, so a
checksum or framing bug in the driver cannot cancel out against the same bug in the emulator.

Modelled per interface (UM0701-02 6.2): I2C reads begin with the status byte (bit 0 ready) and
a frame is taken off the chip only by a read that covers it whole (short status polls leave it);
SPI is LSB first with DW/SR/DR prefix bytes and a DR read releases the frame when CS rises; HSU
starts asleep and drops frames until the host sends the 0x55 wake-up preamble. A host NACK makes
the chip send its last response again (cleanly); a host ACK aborts the command in progress.

Assumptions where the manual leaves room (a real chip may differ): RF commands before
SAMConfiguration get the error frame; when the reader releases the emulated card or the field
goes away, TgGetData / TgSetData answer status 0x29 (a released target, as reported by users of
real chips); the ATS the chip sends as a card is 78 80 70 02 + the historical bytes.

Faults (``Faults``), keyed by the number of the valid command frame the chip received (from 1),
or of the response transmission (from 1; a resend after a NACK is a new transmission):

    drop_command   command frames ignored: no ACK, nothing done (lost on the way in)
    drop_ack       commands executed but their ACK never sent
    delay_ms       {command: ms} the response is ready only after ms
    silent         commands never answered (the host must time out and abort)
    corrupt_lcs    response transmissions whose length checksum is broken
    corrupt_dcs    response transmissions whose data checksum is broken
    garbage        {transmission: bytes} noise the host receives instead of (I2C, SPI) or before
                   (HSU) that transmission

The field has its own: ``RfField.leave_before`` / ``leave_after`` take the card away at the n-th
APDU, before it sees the APDU or after it answered (the answer is lost); ``RfField.tear``
picks the APDU by content; ``RfField.fwt_ms`` makes an answer later than the frame waiting time
a lost one (the reader times out), as on air when a card neither answers nor asks for more time.
"""

from .bus import SimI2C, SimPin, SimSPI, SimUART, irq_pin
from .chip import Faults, PN532Emulator
from .frames import (
    ACK_FRAME,
    ERROR_FRAME,
    FIRMWARE,
    MAX_DATA,
    NACK_FRAME,
    TFI_CHIP,
    TFI_HOST,
    info_frame,
    parse_frame,
)
from .rf import CardInfo, RfField, SimCard, SimReaderLink

__all__ = [
    "ACK_FRAME", "ERROR_FRAME", "FIRMWARE", "MAX_DATA", "NACK_FRAME", "TFI_CHIP", "TFI_HOST",
    "CardInfo", "Faults", "PN532Emulator", "RfField", "SimCard", "SimI2C", "SimPin",
    "SimReaderLink", "SimSPI", "SimUART", "info_frame", "irq_pin", "parse_frame",
]
