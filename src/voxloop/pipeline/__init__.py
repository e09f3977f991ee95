"""Run the stages in order: in-process after ingest, in a background worker, or on Spark."""
