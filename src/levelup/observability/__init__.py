"""What operators watch Levelup with: Prometheus metrics, readiness, and structured logs (SPEC §11)."""
