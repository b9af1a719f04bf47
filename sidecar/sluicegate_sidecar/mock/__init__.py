"""The built-in mock provider: an httpx transport (``transport``) serving generated replies (``content``)."""
