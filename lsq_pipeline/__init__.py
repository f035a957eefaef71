"""lsq_pipeline: keep LeadSquared opportunities in step with source records."""
