"""The Sluicegate operator: renders custom resources into sealed config, serves data keys, injects sidecars."""
