"""Dagster definitions: resources, assets, checks, jobs and schedules."""
