"""MQTT -> Kafka ingesters (issue: MQTT ingester). Not built yet."""
