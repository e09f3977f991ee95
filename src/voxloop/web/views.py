"""HTTP routes of the web domain."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
