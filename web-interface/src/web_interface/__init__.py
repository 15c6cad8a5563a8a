"""trading-bot web-interface: the dashboard, talking to the gateway only."""
