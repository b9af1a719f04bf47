"""How an app names a model in a request, as the sidecar resolves it and the ledger records it.

``auto`` (the classifier picks a tier), ``tier:<name>``, ``<connection or provider>/<model>`` (pinned),
or a bare model name.
"""

from __future__ import annotations

AUTO = "auto"
TIER_PREFIX = "tier:"
