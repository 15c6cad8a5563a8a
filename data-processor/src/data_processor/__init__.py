"""trading-bot data-processor: validation, cleaning, aggregation, indicators and regimes."""
