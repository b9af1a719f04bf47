"""Translate other gateways' configs (Portkey, LiteLLM) into Sluicegate resources. Pure."""
