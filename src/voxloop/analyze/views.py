"""HTTP routes of the analyze domain: JSON API (router, under /api/v1) and pages."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
pages = APIRouter()
