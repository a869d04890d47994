"""Running one job: contract (pure) → staging (S3 ↔ dirs) → backend → outputs → logs → status."""
