"""The LeadSquared opportunity API as Python: models, client, rate limit, typed errors. No Dagster."""
