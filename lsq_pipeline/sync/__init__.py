"""The sync's own logic: mapping, normalisation, planning, state table, journal. No Dagster."""
