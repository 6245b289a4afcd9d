"""Tests of firmware/ (core, wallet, POS, the hardware drivers) on CPython, and of the same code
in MicroPython: portable/ holds the tests written MicroPython-compatibly, run by pytest here and
again inside the MicroPython VM (test_micropython_portable) and the native port
(test_native_portable). Payments run POS and wallet through real APDUs on simulated flash
(tests/support/wallet_helpers.py, protocol_fixtures.py); the PN532 driver runs against the
frame-level emulator (sim/nfc/pn532/, tests/support/pn532_helpers.py, pn532_fakes.py).

    pytest tests/firmware
"""
