"""trading-bot data-collector: KIS REST backfill and WebSocket streams, published to the bus."""
