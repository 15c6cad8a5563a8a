"""Shared foundation of trading-bot: every service is built from these parts."""
