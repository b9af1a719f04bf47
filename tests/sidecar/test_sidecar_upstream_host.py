"""A real connection's requests carry the ``Host`` header httpx sent for the same base URL (its
``netloc``), now that they go on the aiohttp session without httpx in the process."""

from __future__ import annotations

import httpx
import pytest
from yarl import URL

from sluicegate_sidecar.upstream import host_header


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1/chat/completions",
        "http://127.0.0.1:9000/v1/chat/completions",
        "https://api.example.com:443/v1",
        "http://api.example.com:80/v1",
        "https://api.example.com:8443/v1",
        "http://[::1]:8080/v1",
        "https://[2001:db8::1]:443/v1",
        "https://bücher.example/v1",
        "https://Gateway.Example.COM/openai/v1",
        "http://user:secret@proxy.example:8080/v1",
        "https://api.example.com.:8443/v1",
    ],
)
def test_the_host_header_is_the_one_httpx_sent_for_the_same_url(url: str) -> None:
    assert host_header(URL(url)) == httpx.URL(url).netloc.decode("ascii")
