"""What operators watch Levelup with: Prometheus metrics, readiness, and structured logs (docs/deploy.md)."""
