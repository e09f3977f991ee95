"""Analyze satisfaction: key drivers, dissatisfied segments, journeys, churn risk."""
