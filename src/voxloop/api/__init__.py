"""HTTP API (FastAPI) assembled from every domain's routes."""
