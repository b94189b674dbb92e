"""The LLM brain's parts: the chat model, LLM analysis, the CRM port, the compensation policy."""
