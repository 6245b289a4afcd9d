"""`tapcash conformance card|pos`: docs/PROTOCOL.md's checks against any card or terminal
(checks.py), through PC/SC or a serial port (cli.py)."""
