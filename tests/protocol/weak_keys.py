"""Public keys no agent may have (protocol/signing.py `public_key_problem`), shared by the tests that refuse them."""

from __future__ import annotations

import base64

# The eight points of small order of edwards25519, canonically encoded: libsodium's blocklist
# (`ge25519_has_small_order`), each y with both signs of x where x is not 0.
SMALL_ORDER = [
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4 (the all-zero key)
    "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
    "0100000000000000000000000000000000000000000000000000000000000000",  # order 1: the identity
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
]
NOT_CANONICAL = [
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p, another spelling of y = 0
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p + 1: the identity again
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",  # y = 2^255 - 1
    "0100000000000000000000000000000000000000000000000000000000000080",  # the identity with x = "-0"
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",  # (0, -1) with x = "-0"
]
# The forgery the identity key accepts over any message: R = the identity, S = 0.
FORGED = base64.b64encode(bytes.fromhex(SMALL_ORDER[2]) + bytes(32)).decode()
