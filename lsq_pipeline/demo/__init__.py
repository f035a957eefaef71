"""The demo: its source files and mapping (package data), and the small dg project
`lsq-pipeline demo` lays out in an empty folder."""
