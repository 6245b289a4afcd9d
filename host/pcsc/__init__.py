"""PC/SC: the desktop POS over any PC/SC contactless reader, and a simulated wallet presented
to PC/SC as a card through vsmartcard's vpcd driver.

- `reader_link.PcscLink`: a `hal.Link` over pyscard (any reader pcscd knows);
- `vpcd_card.VpcdCard`: a card app (the wallet) speaking the vpcd TCP protocol;
- `cli`: `tapcash pcsc readers | serve-card | pay AMOUNT`.

pyscard is the optional extra `pcsc` (`pip install 'tapcash[pcsc]'`); nothing here imports
it until a reader is used, so `tapcash --help` works without it.
"""
