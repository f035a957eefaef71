"""The push: the plan sent to LeadSquared in journalled batches that a re-run never doubles."""
