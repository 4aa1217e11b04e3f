"""The OpenAI Realtime API surface: event models and the per-connection handler."""
