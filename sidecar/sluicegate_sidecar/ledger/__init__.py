"""The sidecar's spend ledger: the writer (``writer``) and its entries made from the sidecar's values
(``records``). The entry format and reading files are the contract's (``sluicegate_contract.ledger``).
"""
