"""Audio end-of-turn models for semantic turn detection (Smart Turn v3.2)."""

from orchestrator.turn_model.smart_turn import DEFAULT_MODEL_PATH, FETCH_COMMAND, SmartTurn, TurnModelMissing

__all__ = ["DEFAULT_MODEL_PATH", "FETCH_COMMAND", "SmartTurn", "TurnModelMissing"]
