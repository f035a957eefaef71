"""A local HTTP server that behaves like LeadSquared's opportunity API. Knows nothing of the client."""
