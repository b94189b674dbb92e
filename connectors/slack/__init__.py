"""Slack operator queue (slack-bolt AsyncApp): one thread per conversation, the AI draft with buttons."""

from connectors.slack.connector import SlackConnector

__all__ = ["SlackConnector"]
