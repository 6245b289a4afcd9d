# SELECT (00 A4 04 00, data = AID) on the POS's serial side: answers the INFO map of GET INFO.
from ..core import apdu, cbor
from .get_info import info_map


def handle(app, p1, p2, data):
    if p1 != 0x04 or p2 != 0x00:
        raise apdu.ApduError(apdu.SW_WRONG_P1P2)
    if data != apdu.AID:
        raise apdu.ApduError(apdu.SW_NOT_FOUND)
    return cbor.encode(info_map(app))
