"""Feature sets shared by more than one service (dependency-light: numpy only)."""
