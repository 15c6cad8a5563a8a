"""trading-bot model-trainer: Trading environment, LSTM + A3C training, walk-forward evaluation, model registry."""
