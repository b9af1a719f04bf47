"""The Sluicegate operator: renders resources into sealed config, serves data keys, injects sidecars."""
