"""Sample enterprises for the demo and the tests: valid unified social credit codes (the check
character computed by python-stdnum) registered in Shenzhen (division 440300)."""

from __future__ import annotations

from stdnum.cn import uscc

SHENZHEN = "440300"
_ORG_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def credit_code(number: int, division: str = SHENZHEN, kind: str = "1") -> str:
    """The number-th sample enterprise's credit code: 9 (market regulation), kind, division,
    a 9-character organisation code derived from number, and the check character."""
    org = ""
    value = number
    for _ in range(9):
        value, digit = divmod(value, len(_ORG_ALPHABET))
        org = _ORG_ALPHABET[digit] + org
    body = f"9{kind}{division}{org}"
    return body + uscc.calc_check_digit(body)
