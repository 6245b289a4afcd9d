"""Tests of sim/: scenarios and their seeded schedules, whole runs (devices, fields, the ledger on
loopback, the sync tool) on CPython and in the MicroPython VM, the adversary and the oracle,
plots, `tapcash sim serve|board|ui`, and the VM host itself.

    pytest tests/sim
"""
