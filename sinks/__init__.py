"""InfluxDB writer, alert emitters and dead-letter writer. Not built yet."""
