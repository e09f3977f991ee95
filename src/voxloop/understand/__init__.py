"""Understand each voice: scenario, intent, sentiment, emotion, urgency; PII masked first."""
