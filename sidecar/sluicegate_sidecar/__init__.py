"""The Sluicegate sidecar: an OpenAI-compatible gateway on loopback that routes, prices and caps spend."""
