"""Act: work orders, routing, SLAs from commitments, supervision, verification, access."""
