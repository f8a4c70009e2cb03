"""Sample enterprises (and other bodies) for the demo and the tests: valid unified social credit codes (the check
character computed by python-stdnum) registered in Shenzhen (division 440300)."""

from __future__ import annotations

from stdnum.cn import uscc

SHENZHEN = "440300"
_ORG_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


# The registration authority, the code's first character (GB 32100-2015): market regulation
# registers enterprises, civil affairs social organisations, the establishment office public
# institutions (a vocational school).
ENTERPRISE, SOCIAL_ORGANISATION, PUBLIC_INSTITUTION = "9", "5", "1"


def credit_code(
    number: int, division: str = SHENZHEN, kind: str = "1", authority: str = ENTERPRISE
) -> str:
    """The number-th sample body's credit code: the registration authority (an enterprise's
    by default), kind, division, a 9-character organisation code derived from number, and the
    check character."""
    org = ""
    value = number
    for _ in range(9):
        value, digit = divmod(value, len(_ORG_ALPHABET))
        org = _ORG_ALPHABET[digit] + org
    body = f"{authority}{kind}{division}{org}"
    return body + uscc.calc_check_digit(body)
