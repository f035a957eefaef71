"""The `lsq-pipeline` subcommands, one module per group; `lsq_pipeline.cli` assembles the parser."""
