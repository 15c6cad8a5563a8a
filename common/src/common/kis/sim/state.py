"""Everything one running simulator shares between its REST apps, WebSocket servers and pump."""

from __future__ import annotations

from dataclasses import dataclass

from common.clock import Clock
from common.kis.sim.auth import ApprovalBook, TokenBook, TokenBucket
from common.kis.sim.exchange import Exchange
from common.kis.sim.faults import FaultState
from common.kis.sim.market import Market
from common.kis.sim.settings import Domain, SimAccount, SimulatorSettings


@dataclass(eq=False)
class SimState:
    """The simulated broker: settings, clocks, market, exchange, credentials, limits and faults."""

    settings: SimulatorSettings
    clock: Clock  # simulated (market) time
    wall: Clock  # real time: call rates, keep-alives, fault durations
    market: Market
    exchange: Exchange
    tokens: TokenBook
    approvals: ApprovalBook
    faults: FaultState
    rest_buckets: dict[Domain, TokenBucket]
    token_bucket: TokenBucket
    approval_bucket: TokenBucket

    @classmethod
    def build(cls, settings: SimulatorSettings, clock: Clock, wall: Clock, market: Market) -> SimState:
        state = cls(
            settings=settings,
            clock=clock,
            wall=wall,
            market=market,
            exchange=Exchange(market, settings.accounts),
            tokens=TokenBook(settings, clock),
            approvals=ApprovalBook(),
            faults=FaultState(wall),
            rest_buckets={
                "real": TokenBucket(settings.real_rest_per_second, wall),
                "paper": TokenBucket(settings.paper_rest_per_second, wall),
            },
            token_bucket=TokenBucket(settings.token_calls_per_second, wall),
            approval_bucket=TokenBucket(settings.approval_calls_per_second, wall),
        )
        state.faults.apply(settings.faults)
        return state

    def account(self, appkey: str) -> SimAccount | None:
        return self.settings.account_for_appkey(appkey)
