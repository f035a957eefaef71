"""The sync's steps, each over the days of a run: extract, transform, plan, push, reconcile. No Dagster."""
