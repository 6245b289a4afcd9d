"""The NFC side of the simulator: the virtual RF field between a reader and a card, and
the PN532 controller emulated at the frame level on it."""
