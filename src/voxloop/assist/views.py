"""HTTP routes of the assist domain: JSON API (router, under /api/v1) and pages."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["assist"])
pages = APIRouter()
