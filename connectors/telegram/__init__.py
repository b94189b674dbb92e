"""Telegram customer channel (aiogram 3): long polling or webhook, replies through the outbox.

`TelegramConnector(app)` is the runner's channel factory; nothing is created at import time.
"""

from connectors.telegram.connector import WEBHOOK_PATH, TelegramConnector, create_bot
from connectors.telegram.sender import TelegramSender

__all__ = ["WEBHOOK_PATH", "TelegramConnector", "TelegramSender", "create_bot"]
