"""trading-bot api-gateway: the single entry point /api/v1 in front of every service."""
