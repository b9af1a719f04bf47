"""The ``sluicegate`` command line: the only package that imports both the operator and the sidecar."""
