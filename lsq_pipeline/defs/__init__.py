"""The dg defs folder: YAML instances of `LeadSquaredSyncComponent` only, one folder per account."""
