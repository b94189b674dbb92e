"""Offline text analysis of customer messages: language, sentiment and rule-based intent signals."""
