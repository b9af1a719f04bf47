"""Routing: a model name to an ordered list of candidates, the request's bound, health and fallback decisions.

Pure: no HTTP, no clock (time is an argument), no I/O.
"""
