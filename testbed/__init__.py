"""Real parts that the tests and the benchmarks start and stop: hosts as network namespaces, a
PostgreSQL server, an S3-compatible server (SeaweedFS), a fleet spread over hosts, and a load client
that runs on a host. Not shipped with the package."""
