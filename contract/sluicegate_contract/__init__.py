"""The sealed-config contract shared by the operator and the sidecar: schema, encoding, sealing.

Imports nothing else of the project.
"""
