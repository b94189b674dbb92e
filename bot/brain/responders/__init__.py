"""Brains that turn a customer message into an Answer: offline (extractive) and LLM."""
