"""trading-bot trader: Order management, positions and P&L, risk engine, kill switch."""
