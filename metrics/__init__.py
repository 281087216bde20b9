"""Metric names and labels shared by the services, and the /metrics route."""
