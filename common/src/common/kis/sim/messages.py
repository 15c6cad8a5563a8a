"""Every rt_cd/msg_cd/msg1 the simulator answers with, in one place (kis-api.md §3.3, §5.3, §6.2).

Codes marked *sim choice* are not in kis-api.md: the real service answers those situations with a
code the sources did not show, so the simulator uses the code third-party fixtures report
(APBK0952, APBK0400) or one of its own (APBK0517, APBK1356); docs/kis_simulator.md lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.kis.sim.settings import Domain


@dataclass(frozen=True, slots=True)
class Message:
    rt_cd: str
    msg_cd: str
    msg1: str

    def body(self) -> dict[str, str]:
        return {"rt_cd": self.rt_cd, "msg_cd": self.msg_cd, "msg1": self.msg1}


class KisReject(Exception):
    """A business refusal: HTTP 200 with rt_cd != "0" (kis-api.md §3.5)."""

    def __init__(self, message: Message) -> None:
        super().__init__(f"{message.msg_cd} {message.msg1}")
        self.message = message


class GatewayError(Exception):
    """A gateway refusal (EGW…, wrong TR): HTTP 500 with the rt_cd/msg_cd/msg1 envelope."""

    def __init__(self, message: Message, status: int = 500) -> None:
        super().__init__(f"{message.msg_cd} {message.msg1}")
        self.message = message
        self.status = status


# Success (§3.3, §4.5).
QUOTE_OK = Message("0", "MCA00000", "정상처리 되었습니다.")
PAGE_MORE = Message("0", "KIOK0500", "조회가 계속됩니다..다음버튼을 Click 하십시오.")
PAGE_LAST = Message("0", "KIOK0510", "조회가 완료되었습니다")
ORDER_SENT_REAL = Message("0", "APBK0013", "주문 전송 완료 되었습니다.")
BUY_SENT_PAPER = Message("0", "40600000", "모의투자 매수주문이 완료 되었습니다.")
SELL_SENT_PAPER = Message("0", "40590000", "모의투자 매도주문이 완료 되었습니다.")
REVISE_SENT_PAPER = Message("0", "40640000", "모의투자 정정주문이 완료 되었습니다.")
CANCEL_SENT_PAPER = Message("0", "40650000", "모의투자 취소주문이 완료 되었습니다.")

# Gateway (§6.2): HTTP 500.
RATE_LIMITED = Message("1", "EGW00201", "초당 거래건수를 초과하였습니다.")
TOKEN_INVALID = Message("1", "EGW00121", "유효하지 않은 token 입니다.")
TOKEN_EXPIRED = Message("1", "EGW00123", "기간이 만료된 token 입니다.")
BAD_CREDENTIALS_TYPE = Message("1", "EGW00205", "credentials_type이 유효하지 않습니다.(Bearer)")
BAD_APPKEY = Message("1", "EGW00103", "유효하지 않은 AppKey입니다.")
BAD_APPSECRET = Message("1", "EGW00105", "유효하지 않은 AppSecret입니다.")  # sim choice
PAPER_KEY_ON_REAL = Message("1", "EGW02004", "실전투자 도메인은 모의투자 앱키로 호출하실 수 없습니다.")
REAL_KEY_ON_PAPER = Message("1", "EGW02004", "모의투자 도메인은 실전투자 앱키로 호출하실 수 없습니다.")
NOT_PAPER_TR = Message("1", "", "모의투자 TR 이 아닙니다.")
UNKNOWN_TR = Message("1", "OPSQ0002", "없는 서비스 코드 입니다")

# Token endpoint (§2.1): HTTP 403, error_code/error_description shape.
TOKEN_THROTTLED = ("EGW00133", "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)")
TOKEN_BAD_APPKEY = ("EGW00103", "유효하지 않은 AppKey입니다.")
TOKEN_BAD_SECRET = ("EGW00105", "유효하지 않은 AppSecret입니다.")
TOKEN_BAD_GRANT = ("EGW00104", "grant_type이 유효하지 않습니다.")  # sim choice
REVOKE_OK = "접근토큰 폐기에 성공하였습니다"

# Business (§6.2): HTTP 200.
UNKNOWN_SYMBOL = Message("1", "APBK0656", "해당종목정보가 없습니다")
INVALID_ACCOUNT = Message("1", "OPSQ2000", "ERROR : INPUT INVALID_CHECK_ACNO")
ORIGINAL_NOT_FOUND = Message("1", "APBK1356", "원주문번호가 존재하지 않습니다")  # sim choice
REVISE_QTY_TOO_LARGE = Message("7", "APBK1359", "정정/취소 가능수량을 초과하였습니다")


def invalid_input(field: str) -> Message:
    """OPSQ2001 for a parameter whose value the server refuses (e.g. INQR_DVSN=02)."""
    return Message("1", "OPSQ2001", f"ERROR : INPUT INVALID_CHECK_{field.upper()}")


def market_closed(domain: Domain) -> Message:
    """Not a trading day (APBK0918)."""
    return Message("1", "APBK0918", "모의투자 장종료 입니다." if domain == "paper" else "장운영일자가 아닙니다.")


def outside_hours(domain: Domain) -> Message:
    """A trading day, but outside 09:00–15:30 KST (APBK0919)."""
    return Message("1", "APBK0919", "모의투자 장종료 입니다." if domain == "paper" else "장운영시간이 아닙니다.")


def trading_halted(domain: Domain) -> Message:
    text = "모의투자 매매거래정지 종목입니다." if domain == "paper" else "매매거래정지 종목입니다."
    return Message("1", "APBK0918", text)


def off_tick(domain: Domain) -> Message:
    text = "모의투자 주문처리가 안되었습니다(호가단위 오류)" if domain == "paper" else "호가단위 오류입니다."
    return Message("1", "APBK0506", text)


def outside_limits(domain: Domain) -> Message:  # sim choice
    text = "모의투자 주문가격이 상하한가를 벗어났습니다." if domain == "paper" else "주문가격이 상하한가를 벗어났습니다."  # noqa: E501
    return Message("1", "APBK0517", text)


def insufficient_cash(domain: Domain) -> Message:
    text = "모의투자 주문가능금액이 부족합니다." if domain == "paper" else "주문가능금액을 초과 했습니다"
    return Message("1", "APBK0952", text)


def insufficient_shares(domain: Domain) -> Message:
    text = "모의투자 주문가능수량이 부족합니다." if domain == "paper" else "주문가능수량을 초과했습니다."
    return Message("1", "APBK0400", text)
