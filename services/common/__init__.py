"""What every service shares: configuration, databases, outbox, Kafka, gRPC serving, auth."""
