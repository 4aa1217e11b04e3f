"""What only the two model services share: the step loop, the model's lifecycle around it,
checkpoint lookup and the torch device helpers. What the orchestrator shares with them too
is in `kit`."""
