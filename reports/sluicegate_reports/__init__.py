"""Offline reports over what the gateway wrote: savings, invoice reconciliation, exports, ledger tools.

Never imported by the sidecar or the operator; imports nothing of the project but the contract.
"""
