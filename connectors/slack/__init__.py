"""Slack operator queue (slack-bolt AsyncApp): one thread per conversation, the AI draft with buttons."""

from connectors.slack.connector import SlackConnector, create_slack_channel

__all__ = ["SlackConnector", "create_slack_channel"]
