"""Typed application state: what the app holds for its whole life, behind `web.AppKey`s."""

from __future__ import annotations

from aiohttp import web

from gateway.settings import Settings
from gateway.store import Store
from gateway.upstream import Upstream

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
UPSTREAM = web.AppKey("upstream", Upstream)
