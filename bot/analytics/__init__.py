"""Analytics: the report computed from the event log (`relaydesk report`) and live Prometheus counters."""
