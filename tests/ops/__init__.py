"""Operations: metrics, readiness, logs, many workers, Redis, the deployment files (issue 13)."""
