FROM python:3.11-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY connectors ./connectors
RUN pip install --no-cache-dir .
COPY config.yaml ./
COPY prompts ./prompts
COPY knowledge ./knowledge
ENV RELAYDESK_CONFIG=/app/config.yaml RELAYDESK__SERVER__HOST=0.0.0.0
VOLUME /app/data
EXPOSE 8080
CMD ["relaydesk", "run"]
