"""`tapcash sync`: move a device's journal to the ledger over a serial line, and the ledger's
answer (ack, vouchers, update) back to the device."""
