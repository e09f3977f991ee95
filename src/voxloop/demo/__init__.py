"""Generate a realistic demo operator and play the whole closed loop on it."""
