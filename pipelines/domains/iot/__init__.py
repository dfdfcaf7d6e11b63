"""IoT sensor telemetry: device and site statistics, anomalies, silent devices."""
