"""A caching, cost-accounting reverse proxy for the OpenAI Images API."""

__version__ = "0.1.0"
