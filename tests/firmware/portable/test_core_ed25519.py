# Portable tests for firmware/core/ed25519.py and firmware/core/sha512.py: run by pytest on
# CPython (pure backend forced) and, unchanged, inside the MicroPython VM. The expected
# booleans of the strictness cases are libsodium's answers (tests/firmware/test_ed25519.py checks
# them against PyNaCl on CPython).
try:
    from tapcash.firmware.core import comb, combgen, ed25519, hal, sha512
except ImportError:  # on a board / in the VM the firmware tree is importable as `firmware`
    from firmware.core import comb, combgen, ed25519, hal, sha512

_L = 2**252 + 27742317777372353535851937790883648493


def _h(s):
    return bytes.fromhex(s)


# RFC 8032 section 7.1, Ed25519: (name, secret key, public key, message, signature), hex.
MSG_1024 = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12"
    "ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe57"
    "38829adb26c81b37c93a1b270b20329d658675fc6ea534e0810a4432826bf58c941efb65d57a338b"
    "bd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4fe"
    "ba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e06203b33890cc9b8"
    "32f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc10"
    "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53"
    "f1d8ac70bdcb7ed185ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2"
    "d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6"
    "079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f27088d78b7e883c8759d2c4f5c65adb7553"
    "878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2"
    "cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae078"
    "4504df543af8969be3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8"
    "fcffead94f3c7ca495e056a9b47acdb751fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301"
    "651339e22904cc8c42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8"
    "ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34dff7310fdc82aebfd9"
    "04b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7"
    "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a"
    "3ca8e1b939ae49e488acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a3"
    "2ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a4"
    "3dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5fb93246f6b1116398a346f1a641f3b041"
    "e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d9"
    "0d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef"
    "68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0"
)
RFC8032 = [
    (
        "TEST 1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "TEST 2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "TEST 3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "TEST 1024",
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        MSG_1024,
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
        "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
    ),
    (
        "TEST SHA(abc)",
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]

# "Taming the many EdDSAs" (Chalkias, Garillot, Nikolaenko 2020), vectors 0-11:
# (message, public key, signature, libsodium's verdict). 3 has mixed-order A and R and
# passes the cofactorless equation; 4 passes only the cofactored one, so a libsodium-equal
# verifier accepts 3 and rejects 4; 0-2 have small-order points, 6-7 S >= L, 8-11
# non-canonical R or A.
TAMING = [
    (
        "8c93255d71dcab10e8f379c26200f3c7bd5f09d9bc3068d3ef4edeb4853022b6",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
        "0000000000000000000000000000000000000000000000000000000000000000",
        False,
    ),
    (
        "9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43"
        "a5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
        False,
    ),
    (
        "aebf3f2601a0c8c5d39cc7d8911642f740b78168218da8471772b35f9d35b9ab",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"
        "8c4bd45aecaca5b24fb97bc10ac27ac8751a7dfe1baff8b953ec9f5833ca260e",
        False,
    ),
    (
        "9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79",
        "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
        "9046a64750444938de19f227bb80485e92b83fdb4b6506c160484c016cc1852f"
        "87909e14428a7a1d62e9f22f3d3ad7802db02eb2e688b6c52fcd6648a98bd009",
        True,
    ),
    (
        "e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c",
        "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
        "160a1cb0dc9c0258cd0a7d23e94d8fa878bcb1925f2c64246b2dee1796bed512"
        "5ec6bc982a269b723e0668e540911a9a6a58921d6925e434ab10aa7940551a09",
        False,
    ),
    (
        "e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c",
        "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
        "21122a84e0b5fca4052f5b1235c80a537878b38f3142356b2c2384ebad4668b7"
        "e40bc836dac0f71076f9abe3a53f9c03c1ceeeddb658d0030494ace586687405",
        False,
    ),
    (
        "85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40",
        "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623",
        "e96f66be976d82e60150baecff9906684aebb1ef181f67a7189ac78ea23b6c0e"
        "547f7690a0e2ddcd04d87dbc3490dc19b3b3052f7ff0538cb68afb369ba3a514",
        False,
    ),
    (
        "85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40",
        "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623",
        "8ce5b96c8f26d0ab6c47958c9e68b937104cd36e13c33566acd2fe8d38aa1942"
        "7e71f98a473474f2f13f06f97c20d58cc3f54b8bd0d272f42b695dd7e89a8c22",
        False,
    ),
    (
        "9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
        "03be9678ac102edcd92b0210bb34d7428d12ffc5df5f37e359941266a4e35f0f",
        False,
    ),
    (
        "9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
        "ca8c5b64cd208982aa38d4936621a4775aa233aa0505711d8fdcfdaa943d4908",
        False,
    ),
    (
        "e96b7021eb39c1a163b6da4e3093dcd3f21387da4cc4572be588fafae23c155b",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dc"
        "a5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
        False,
    ),
    (
        "39a591f5321bbe07fd5a23dc2f39d025d74526615746727ceefd6e82ae65c06f",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dc"
        "a5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
        False,
    ),
]

# C2SP CCTV ed25519vectors.json (a subset): (number, public key, signature, message, verdict).
_K0 = "00" * 32
_KM = "10eb7c3acfb2bed3e0d6ab89bf5a3d6afddd1176ce4812e38d9fd485058fdb1f"  # mixed order
_KP = "ed" + "ff" * 30 + "7f"  # y = p: non-canonical encoding of a small-order point
CCTV = [
    (
        0,
        _K0,
        "00" * 64,
        "ed25519vectors 3",
        False,
    ),
    (
        2,
        _K0,
        "36684ea91032ba5b1dbab2d02f4debc74c3327f2b3802e2e4d371aa42b12b56b"
        "05ba9a796274d80437afa36f1236563f2f3b0aa84cecddc3d20914615ba4fe02",
        "ed25519vectors 7",
        False,
    ),
    (
        4,
        _KM,
        "00" * 32 + "5e176f12cfb0d4e6eb6929b19ae4c998ef05c1c2cf628a9b1fa1c21312627108",
        "ed25519vectors 7",
        False,
    ),
    (
        5,
        _KM,
        "00" * 32 + "9472a69cd9a701a50d130ed52189e2455b23767db52cacb8716fb896ffeeac09",
        "ed25519vectors 3",
        False,
    ),
    (
        6,
        _KM,
        "36684ea91032ba5b1dbab2d02f4debc74c3327f2b3802e2e4d371aa42b12b56b"
        "c02e2b9e63e385c058bf62b14b3a2b29ccefe8e38ddb536bc3f9865320a3d801",
        "ed25519vectors 10",
        False,
    ),
    (
        7,
        _KM,
        "36684ea91032ba5b1dbab2d02f4debc74c3327f2b3802e2e4d371aa42b12b56b"
        "bbfd00bd9c259d8d222d15e67a3d8228585050dbb9b9585be20d8fadc721da03",
        "ed25519vectors",
        True,
    ),
    (
        8,
        _KP,
        "00" * 64,
        "ed25519vectors 8",
        False,
    ),
    (
        12,
        _KP,
        "36684ea91032ba5b1dbab2d02f4debc74c3327f2b3802e2e4d371aa42b12b56b"
        "05ba9a796274d80437afa36f1236563f2f3b0aa84cecddc3d20914615ba4fe02",
        "ed25519vectors 7",
        False,
    ),
    (
        16,
        _KM,
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
        "1cb421dfbd92aa6c30d550bff53c81cf650ace6deb96a8ec22d2fef84dbbe20b",
        "ed25519vectors 6",
        False,
    ),
    (
        17,
        _KM,
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
        "ad7a355469b5c87e550469f6b2de409ee723acd584bf35f86b80c384e8ceb702",
        "ed25519vectors 3",
        False,
    ),
    (
        22,
        _K0,
        "00" * 31 + "800000000000000000000000000000000000000000000000000000000000000000",
        "ed25519vectors 4",
        False,
    ),
    (
        26,
        _KM,
        "00" * 31 + "8075b3d7e9547febbdbf3fde21df901c7ca1fc59e8b689a4ae283919e78cf62b03",
        "ed25519vectors 11",
        False,
    ),
    (
        27,
        _KM,
        "00" * 31 + "80050abffcd4d8ccbb4b8d6bf6649f5aa99e8de5cc182a7409633856ff53f49e0c",
        "ed25519vectors 10",
        False,
    ),
    (
        28,
        _KM,
        "b797b156efcd45a4e2454d2fd0b21438b3ccd80d4c7fd1d1b2c8e55bd4ed4a94"
        "639734cf989e314e9e049fc01a3864d191fed8f231b12fee6fa50aaadba44b0e",
        "ed25519vectors 9",
        False,
    ),
    (
        29,
        _KM,
        "b797b156efcd45a4e2454d2fd0b21438b3ccd80d4c7fd1d1b2c8e55bd4ed4a94"
        "732d9e0279fe001d90327efa319816e3e4506b78432b8b4e1f2fdc4b960d700f",
        "ed25519vectors 2",
        True,
    ),
    (
        38,
        _KM,
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
        "7117c2ec783065c50f2c930cfc9d318c9737991acb260b49e2ca815474532709",
        "ed25519vectors",
        False,
    ),
    (
        39,
        _KM,
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
        "1f5fae114eb0c534b5aed0a892d0a0e1d429df6a025c5ae08012e0ffce78310c",
        "ed25519vectors 27",
        False,
    ),
]


def _pure():
    """Force the pure backend (on CPython the default is PyNaCl); returns the old one."""
    old = ed25519.backend()
    ed25519.set_backend("pure")
    return old


def test_rfc8032_vectors():
    old = _pure()
    try:
        for name, sk, pk, msg, sig in RFC8032:
            sk, pk, msg, sig = _h(sk), _h(pk), _h(msg), _h(sig)
            ed25519.clear_caches()
            assert ed25519.public_key(sk) == pk, name
            assert ed25519.sign(sk, msg) == sig, name
            assert ed25519.verify(pk, msg, sig), name
            ed25519.clear_caches()  # cold: the key is decoded again
            assert ed25519.verify(pk, msg, sig), name
            assert not ed25519.verify(pk, msg + b"\x00", sig), name
    finally:
        ed25519.set_backend(old)


def test_sign_from_bytearray_and_memoryview():
    old = _pure()
    try:
        name, sk, pk, msg, sig = RFC8032[2]
        sk, pk, msg, sig = _h(sk), _h(pk), _h(msg), _h(sig)
        assert ed25519.sign(bytearray(sk), memoryview(msg)) == sig
        assert ed25519.verify(bytearray(pk), bytearray(msg), memoryview(sig))
    finally:
        ed25519.set_backend(old)


def test_taming_and_cctv_vectors_decided_like_libsodium():
    old = _pure()
    try:
        for i, (msg, pk, sig, expected) in enumerate(TAMING):
            assert ed25519.verify(_h(pk), _h(msg), _h(sig)) == expected, f"taming {i}"
        for number, pk, sig, msg, expected in CCTV:
            got = ed25519.verify(_h(pk), msg.encode(), _h(sig))
            assert got == expected, f"cctv {number}"
    finally:
        ed25519.set_backend(old)


def test_strictness_cases():
    old = _pure()
    try:
        name, sk, pk, msg, sig = RFC8032[1]
        pk, msg, sig = _h(pk), _h(msg), _h(sig)
        assert ed25519.verify(pk, msg, sig)
        s = int.from_bytes(sig[32:], "little")
        for bad_s in (s + _L, s + 2 * _L, _L, _L + 1, 2**256 - 1):
            forged = sig[:32] + bad_s.to_bytes(32, "little")
            assert not ed25519.verify(pk, msg, forged), bad_s
        # wrong lengths and types never raise
        for n in (0, 31, 33):
            assert not ed25519.verify(pk[:n] + bytes(max(0, n - 32)), msg, sig)
        for n in (0, 63, 65):
            assert not ed25519.verify(pk, msg, (sig + b"\x00")[:n])
        for junk in (None, 0, "text", [1, 2], 3.5):
            assert not ed25519.verify(junk, msg, sig)
            assert not ed25519.verify(pk, junk, sig)
            assert not ed25519.verify(pk, msg, junk)
        # one flipped bit anywhere
        for i in range(0, 512, 37):
            bad = bytearray(sig)
            bad[i >> 3] ^= 1 << (i & 7)
            assert not ed25519.verify(pk, msg, bytes(bad)), i
        for i in range(0, 256, 29):
            bad = bytearray(pk)
            bad[i >> 3] ^= 1 << (i & 7)
            assert not ed25519.verify(bytes(bad), msg, sig), i
        assert not ed25519.verify(pk, b"\x73", sig)
        # the identity as R with an equation that holds: on libsodium's small-order list
        ident = b"\x01" + bytes(31)
        assert not ed25519.verify(pk, msg, ident + bytes(32))
    finally:
        ed25519.set_backend(old)


class _MemFlash(hal.Flash):
    """Blobs in RAM (no open_blob: comb.opener reads such a flash's blob whole)."""

    def __init__(self):
        self.blobs = {}

    def read(self, name):
        return self.blobs.get(name)

    def write(self, name, data):
        self.blobs[name] = bytes(data)

    def append(self, name, data):
        self.blobs[name] = self.blobs.get(name, b"") + bytes(data)


def _tables(flash, pks):
    """The function verify takes to open the key tables of pks, each table stored."""
    combgen.build(flash, pks)
    for i in range(len(pks)):
        assert combgen.ok(flash, comb.PREFIX + str(i), pks[i])
    return comb.opener(flash, pks)


def test_key_tables_decide_like_the_generic_verifier():
    old = _pure()
    try:
        flash = _MemFlash()
        vectors = [(_h(pk), _h(msg), _h(sig)) for _n, _sk, pk, msg, sig in RFC8032]
        table = _tables(flash, [v[0] for v in vectors])
        for pk, msg, sig in vectors:
            assert ed25519.verify(pk, msg, sig, table)
            assert not ed25519.verify(pk, msg + b"\x00", sig, table)
            s = int.from_bytes(sig[32:], "little")
            assert not ed25519.verify(pk, msg, sig[:32] + (s + _L).to_bytes(32, "little"), table)
            for i in range(0, 512, 41):
                bad = bytearray(sig)
                bad[i >> 3] ^= 1 << (i & 7)
                assert not ed25519.verify(pk, msg, bytes(bad), table), i
        # published edge cases (small-order and mixed-order keys and R, non-canonical S...),
        # with a table for every key that decodes
        keys = []
        for _msg, pk, _sig, _expected in TAMING:
            if _h(pk) not in keys and combgen.store(flash, "x", _h(pk)):
                keys.append(_h(pk))
        for _number, pk, _sig, _msg, _expected in CCTV:
            if _h(pk) not in keys and combgen.store(flash, "x", _h(pk)):
                keys.append(_h(pk))
        table = _tables(flash, keys)
        for i, (msg, pk, sig, expected) in enumerate(TAMING):
            assert ed25519.verify(_h(pk), _h(msg), _h(sig), table) == expected, i
        for number, pk, sig, msg, expected in CCTV:
            assert ed25519.verify(_h(pk), msg.encode(), _h(sig), table) == expected, number
    finally:
        ed25519.set_backend(old)


def test_a_table_not_the_keys_is_not_used():
    old = _pure()
    try:
        flash = _MemFlash()
        _n, _sk, pk, msg, sig = RFC8032[1]
        pk, msg, sig = _h(pk), _h(msg), _h(sig)
        other = _h(RFC8032[2][2])
        combgen.store(flash, "k", pk)
        combgen.store(flash, "o", other)
        whole = flash.blobs["k"]
        assert len(whole) == comb.TABLE_BYTES

        def used(blob):
            """verify's answer for the good signature with blob as pk's table."""
            flash.blobs[comb.PREFIX + "0"] = blob
            return ed25519.verify(pk, msg, sig, comb.opener(flash, [pk]))

        assert used(whole)
        # torn (any prefix), or another key's table: decided without it, so still True
        for n in (0, 31, 32, 128, len(whole) - 96, len(whole) - 1):
            assert used(whole[:n]), n
        assert used(flash.blobs["o"])
        # another key's table under pk's name: its first entry is not -pk
        assert used(pk + flash.blobs["o"][32:])
        # a first entry changed (off the curve, or its x of the wrong sign)
        for at in (32, 40, 64, 100, 130):
            bad = bytearray(whole)
            bad[at] ^= 4
            assert used(bytes(bad)), at
        # the table is used when it passes those checks: the rest of it is trusted as the
        # card wrote it (flash an attacker rewrites could hold another issuer key as well)
        assert not used(whole[:128] + bytes(len(whole) - 128))
        # opening it fails: decided without it
        def broken(_pk):
            raise OSError(5)

        assert ed25519.verify(pk, msg, sig, broken)
        assert not ed25519.verify(pk, msg + b"x", sig, broken)
        # no table for a key that does not decode (verify refuses the key anyway)
        y = 2
        while True:
            y += 1
            bad_key = y.to_bytes(32, "little")
            flash.blobs.pop("b", None)
            if not combgen.store(flash, "b", bad_key):
                break
        assert not flash.blobs.get("b")
    finally:
        ed25519.set_backend(old)


# RFC 8032 test 2's key and message signed with its signing_key (the nonce from SHA-256,
# ed25519._key_nonce): the same bytes on CPython and in MicroPython, verified by PyNaCl.
KEYED_SIG_2 = (
    "42237a917452eb919e7fdf41589cca2fd871fdf4c0a3df0260e4b8384df5f7da"
    "7b15ffad00fa0a2723464569cfebe5730401ed50e2012198693c32d8ab37a601"
)


def test_signing_key_signs_verifiable_deterministic_signatures():
    old = _pure()
    try:
        for name, sk, pk, msg, sig in RFC8032:
            sk, pk, msg, sig = _h(sk), _h(pk), _h(msg), _h(sig)
            ed25519.clear_caches()
            key = ed25519.signing_key(sk)
            assert key[3] == pk, name  # derived, or taken as given:
            assert ed25519.signing_key(sk, pk)[1:] == key[1:], name
            keyed = ed25519.sign(sk, msg, key)
            assert ed25519.verify(pk, msg, keyed), name
            assert not ed25519.verify(pk, msg + b"\x00", keyed), name
            assert ed25519.sign(sk, msg, key) == keyed, name  # deterministic
            assert keyed[:32] != sig[:32], name  # another nonce than RFC 8032's
            assert int.from_bytes(keyed[32:], "little") < _L, name
            assert ed25519.sign(sk, msg + b"!", key)[:32] != keyed[:32], name
            assert ed25519.sign(sk, msg) == sig, name  # without a key: RFC 8032 exactly
        name, sk, pk, msg, sig = RFC8032[1]
        sk, pk, msg = _h(sk), _h(pk), _h(msg)
        assert ed25519.sign(sk, msg, ed25519.signing_key(sk, pk)).hex() == KEYED_SIG_2
        other = ed25519.signing_key(_h(RFC8032[0][1]))  # another seed's key is not used
        assert ed25519.sign(sk, msg, other) == _h(sig)
    finally:
        ed25519.set_backend(old)


def test_rfc_signing_key_signs_rfc8032_bytes():
    """signing_key(seed, pk, rfc=True) (the POS's kept key: receipts and statuses) signs with
    RFC 8032's nonce: the vectors' bytes exactly, as sign(seed, msg) without a key does."""
    old = _pure()
    try:
        for name, sk, pk, msg, sig in RFC8032:
            sk, pk, msg, sig = _h(sk), _h(pk), _h(msg), _h(sig)
            ed25519.clear_caches()
            key = ed25519.signing_key(sk, pk, True)
            assert key[1:4] == ed25519.signing_key(sk)[1:], name  # the same expansion
            assert ed25519.sign(sk, msg, key) == sig, name
            ed25519.clear_caches()  # no help from the one-seed cache: the key is enough
            assert ed25519.sign(sk, msg, ed25519.signing_key(sk, None, True)) == sig, name
            assert ed25519.sign(sk, msg + b"!", key) == ed25519.sign(sk, msg + b"!"), name
        other = ed25519.signing_key(_h(RFC8032[0][1]), None, True)  # another seed's: not used
        name, sk, pk, msg, sig = RFC8032[1]
        assert ed25519.sign(_h(sk), _h(msg), other) == _h(sig)
    finally:
        ed25519.set_backend(old)


def test_sign_rejects_bad_seeds():
    old = _pure()
    try:
        for seed in (b"", bytes(31), bytes(33)):
            try:
                ed25519.sign(seed, b"m")
            except ValueError:
                pass
            else:
                raise AssertionError(f"accepted a {len(seed)}-byte seed")
        try:
            ed25519.public_key("0" * 32)
        except TypeError:
            pass
        else:
            raise AssertionError("accepted a str seed")
    finally:
        ed25519.set_backend(old)


# FIPS 180-4 / NIST example vectors for SHA-512.
SHA512_VECTORS = [
    (
        b"",
        "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
        "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
    ),
    (
        b"abc",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    ),
    (
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c335"
        "96fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445",
    ),
    (
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
        b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
        "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
        "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909",
    ),
]


def test_sha512_vectors():
    for msg, digest in SHA512_VECTORS:
        assert sha512.sha512_pure(msg) == _h(digest), msg
        assert sha512.sha512(msg) == _h(digest), msg
        h = sha512.SHA512()
        for i in range(len(msg)):
            h.update(msg[i : i + 1])
        assert h.hexdigest() == digest, msg


def test_sha512_block_boundaries():
    # lengths around the padding edges against a one-shot/incremental cross-check
    data = bytes((i * 7 + 3) & 255 for i in range(300))
    for n in (0, 1, 111, 112, 113, 127, 128, 129, 239, 240, 255, 256, 257, 300):
        one = sha512.sha512_pure(data[:n])
        h = sha512.SHA512(data[: n // 3])
        h.update(data[n // 3 : n])
        c = h.copy()
        assert h.digest() == one, n
        assert c.digest() == one, n
        c.update(b"x")
        assert h.digest() == one, n
