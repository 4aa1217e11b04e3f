"""What every service shares: settings, audio framing, the msgpack wire protocol,
API-key auth, health/readiness/metrics routes and logging."""
