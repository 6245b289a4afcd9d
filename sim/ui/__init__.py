"""`tapcash sim ui`: a terminal UI (Textual) in which a person runs a checkout by hand.

The POS and the card wallets are the unchanged firmware apps on simulated flash; the UI only
supplies their HAL objects (screen, keypad, signal) and the virtual NFC field between them.
"""
