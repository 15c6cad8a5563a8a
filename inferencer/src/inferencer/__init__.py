"""trading-bot inferencer: Serves the promoted model and turns features into decisions."""
